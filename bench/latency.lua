-- bench/latency.lua: wrk script of bench/commerce.sh, part (1): no request() and no response(),
-- so wrk still sends its one static request as fast as without a script; done() only adds the
-- percentiles wrk's --latency lacks (p95), as the other commerce scripts do.
--   wrk -t2 -c64 -d10s --latency -s bench/latency.lua http://127.0.0.1:PORT/health/live
-- The code is in bench/commerce_lib.lua (mode "plain").
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "commerce_lib.lua")
commerce.install("plain")
