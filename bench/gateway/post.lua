-- wrk: POST a small completions request with a user id from a pool of 1000 users.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"m","prompt":"ab","max_tokens":1,"temperature":0}'
local n = 0
request = function()
  n = n + 1
  wrk.headers["x-user-id"] = "user-" .. (n * 7919 % 1000)
  return wrk.format(nil, nil, nil, nil)
end
