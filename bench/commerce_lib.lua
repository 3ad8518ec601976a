-- bench/commerce_lib.lua: the shared part of the wrk scripts of bench/commerce.sh
-- (bench/products.lua, bench/orders.lua, bench/mixed.lua load it with dofile and call
-- commerce.install(MODE)).
--
-- Modes:
--   plain  wrk's own static request (the URL given); only done() below (bench/latency.lua).
--   read   GET /api/v1/products/{id}, id uniformly random among the lines of the file
--          BENCH_PRODUCT_IDS (the requests are formatted once per thread in init, so a request
--          costs wrk one table lookup). No response() callback: wrk counts non-2xx itself and
--          parses nothing more, as for a static URL.
--   order  POST /api/v1/orders {"items":[{product_id: A, quantity: 1}, {product_id: B, ...}]},
--          A != B uniformly random among the lines of BENCH_ORDER_IDS, with
--          `Authorization: Bearer <token>`, the tokens (one a line, BENCH_TOKENS) taken round-robin.
--   mixed  each request is a read (BENCH_READ_PERCENT %, default 90) or an order, drawn at random.
--
-- order and mixed count every status in response() (a GET answers 200, an order 201, so the
-- counts tell reads from orders) and done() prints it as one line; every mode prints the
-- latency percentiles wrk's --latency lacks (p95). bench/commerce.py reads both lines:
--   commerce statuses: 200=91234 201=10111
--   commerce latency: p50=812 p95=3120 p99=6543 max=20345   (microseconds)

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_statuses.lua")

commerce = {}

local function lines(path, what)
    if not path or path == "" then
        error(what .. ": file not set in the environment")
    end
    local f = assert(io.open(path, "r"))
    local out = {}
    for line in f:lines() do
        line = line:gsub("%s+$", "")
        if line ~= "" then
            table.insert(out, line)
        end
    end
    f:close()
    if #out == 0 then
        error(what .. ": " .. path .. " is empty")
    end
    return out
end

local threads = {}
local mode

function commerce.install(m)
    mode = m

    function setup(thread)
        table.insert(threads, thread)
        thread:set("thread_no", #threads)
    end

    function init(args)
        local no = thread_no or 1
        math.randomseed(os.time() * 1000 + no * 7919)
        counter = no
        statuses = {}
        reads, products, tokens = nil, nil, nil
        if mode == "plain" then
            return
        end
        if mode == "read" or mode == "mixed" then
            reads = {}
            for i, id in ipairs(lines(os.getenv("BENCH_PRODUCT_IDS"), "BENCH_PRODUCT_IDS")) do
                reads[i] = wrk.format("GET", "/api/v1/products/" .. id, {})
            end
        end
        if mode == "order" or mode == "mixed" then
            products = lines(os.getenv("BENCH_ORDER_IDS"), "BENCH_ORDER_IDS")
            if #products < 2 then
                error("BENCH_ORDER_IDS: an order needs two products")
            end
            tokens = {}
            for i, t in ipairs(lines(os.getenv("BENCH_TOKENS"), "BENCH_TOKENS")) do
                tokens[i] = {["Authorization"] = "Bearer " .. t,
                             ["Content-Type"] = "application/json"}
            end
        end
        read_percent = tonumber(os.getenv("BENCH_READ_PERCENT") or "90")
    end

    local function order()
        local n = #products
        local a = math.random(n)
        local b = math.random(n - 1)
        if b >= a then
            b = b + 1
        end
        counter = counter + 1
        local headers = tokens[counter % #tokens + 1]
        return wrk.format("POST", "/api/v1/orders", headers,
                          '{"items":[{"product_id":"' .. products[a] .. '","quantity":1},' ..
                          '{"product_id":"' .. products[b] .. '","quantity":1}]}')
    end

    if mode == "plain" then
        request = nil -- static: wrk formats its request once
    elseif mode == "read" then
        function request()
            return reads[math.random(#reads)]
        end
    elseif mode == "order" then
        request = order
    else
        function request()
            if math.random(100) <= read_percent then
                return reads[math.random(#reads)]
            end
            return order()
        end
    end

    if mode == "order" or mode == "mixed" then
        function response(status, headers, body)
            statuses[status] = (statuses[status] or 0) + 1
        end
    end

    function done(summary, latency, requests)
        io.write(string.format("commerce latency: p50=%d p95=%d p99=%d max=%d\n",
                               latency:percentile(50), latency:percentile(95),
                               latency:percentile(99), latency.max))
        if mode ~= "order" and mode ~= "mixed" then
            return
        end
        io.write("commerce statuses: " .. statuses_line(threads) .. "\n")
    end
end
