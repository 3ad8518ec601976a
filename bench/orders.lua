-- bench/orders.lua: wrk script of bench/commerce.sh, part (3): POST /api/v1/orders of two
-- different products (drawn at random from BENCH_ORDER_IDS), one unit each, with the bearer
-- tokens of BENCH_TOKENS (one a line) taken round-robin; counts every status.
--   BENCH_ORDER_IDS=order-ids.txt BENCH_TOKENS=tokens.txt \
--       wrk -t2 -c16 -d10s --latency -s bench/orders.lua http://127.0.0.1:PORT
-- The code is in bench/commerce_lib.lua (mode "order").
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "commerce_lib.lua")
commerce.install("order")
