-- bench/auth_login.lua: wrk script for the login flood of bench/auth.sh.
--
-- Every request is POST /auth/login with the JSON body {"email": ..., "password": ...} of a user
-- that exists (BENCH_AUTH_EMAIL, BENCH_AUTH_PASSWORD from the environment), so each one costs a
-- full Argon2id verify and, on success, a new refresh-token family in the database.
-- wrk -t1 -c50 -d12s --latency -s bench/auth_login.lua http://127.0.0.1:PORT/auth/login
--
-- wrk counts only "Non-2xx or 3xx responses"; the flood must tell 503 (hash queue full) from
-- 429 (rate limit or login throttle) and 401 (a wrong body), so response() counts each status
-- and done() prints one line that bench/auth.py reads:
--   auth_login statuses: 200=1234 503=5
-- Defining response() makes wrk parse every response; at a few hundred logins/s that is free.

local function json_string(s)
    return '"' .. s:gsub('[%c"\\]', function(c)
        return string.format("\\u%04x", c:byte())
    end) .. '"'
end

local email = os.getenv("BENCH_AUTH_EMAIL") or "bench@example.com"
local password = os.getenv("BENCH_AUTH_PASSWORD") or "bench-password-123"

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":' .. json_string(email) .. ',"password":' .. json_string(password) .. '}'

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "wrk_statuses.lua")

local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    statuses = {}
end

function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
    io.write("auth_login statuses: " .. statuses_line(threads) .. "\n")
end
