-- bench/wrk_statuses.lua: the status count that bench/auth_login.lua and bench/commerce_lib.lua
-- share (loaded with dofile). Each thread keeps `statuses` (code -> count) in response();
-- statuses_line(threads) sums them over the threads collected in setup() as "200=12 503=1".

function statuses_line(threads)
    local total = {}
    for _, t in ipairs(threads) do
        local s = t:get("statuses")
        if s then
            for code, n in pairs(s) do
                total[code] = (total[code] or 0) + n
            end
        end
    end
    local codes = {}
    for code in pairs(total) do
        table.insert(codes, code)
    end
    table.sort(codes)
    local parts = {}
    for _, code in ipairs(codes) do
        table.insert(parts, code .. "=" .. total[code])
    end
    return #parts > 0 and table.concat(parts, " ") or "none"
end
