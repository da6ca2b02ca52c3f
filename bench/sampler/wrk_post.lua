-- wrk script: POST the sampler's one-token completion body.
-- env: BENCH_KEY, BENCH_MODEL
local key, model = os.getenv("BENCH_KEY"), os.getenv("BENCH_MODEL")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key
wrk.headers["X-Api-Key"] = key
wrk.body = '{"model":"' .. model .. '","prompt":[1,2],"n":1,"max_tokens":1,"temperature":1,' ..
  '"top_p":1,"top_k":0,"raw_output":true,"stream":false}'
