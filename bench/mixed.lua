-- bench/mixed.lua: wrk script of bench/commerce.sh, part (4): each request is a
-- GET /api/v1/products/{id} (BENCH_READ_PERCENT %, default 90, id from BENCH_PRODUCT_IDS) or a
-- POST /api/v1/orders as bench/orders.lua sends it (BENCH_ORDER_IDS, BENCH_TOKENS), drawn at
-- random per request; counts every status (200 = a read, 201 = an order).
--   BENCH_PRODUCT_IDS=ids.txt BENCH_ORDER_IDS=order-ids.txt BENCH_TOKENS=tokens.txt \
--       wrk -t2 -c64 -d10s --latency -s bench/mixed.lua http://127.0.0.1:PORT
-- The code is in bench/commerce_lib.lua (mode "mixed").
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "commerce_lib.lua")
commerce.install("mixed")
