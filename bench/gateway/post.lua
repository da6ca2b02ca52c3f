-- wrk: POST a one-token completions request with a user id from a pool of 1000 users.
-- env: BENCH_MODEL (the body's model), BENCH_KEY (Authorization), if set.
local key, model = os.getenv("BENCH_KEY"), os.getenv("BENCH_MODEL") or "m"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
if key and key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end
wrk.body = '{"model":"' .. model .. '","prompt":"ab","max_tokens":1,"temperature":0}'
local n = 0
request = function()
  n = n + 1
  wrk.headers["x-user-id"] = "user-" .. (n * 7919 % 1000)
  return wrk.format(nil, nil, nil, nil)
end
