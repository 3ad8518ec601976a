-- bench/products.lua: wrk script of bench/commerce.sh, part (2): GET /api/v1/products/{id} with
-- an id drawn at random from the file BENCH_PRODUCT_IDS (one product id a line).
--   BENCH_PRODUCT_IDS=ids.txt wrk -t2 -c16 -d10s --latency -s bench/products.lua http://127.0.0.1:PORT
-- The code is in bench/commerce_lib.lua (mode "read").
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "commerce_lib.lua")
commerce.install("read")
