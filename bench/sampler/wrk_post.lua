-- wrk script: POST the sampler's one-token completion body.
-- env: BENCH_KEY, BENCH_MODEL, BENCH_STREAM=1 (SSE with perf_metrics_in_response)
local key, model = os.getenv("BENCH_KEY"), os.getenv("BENCH_MODEL")
local stream = os.getenv("BENCH_STREAM") == "1"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key
wrk.headers["X-Api-Key"] = key
wrk.body = '{"model":"' .. model .. '","prompt":[1,2],"n":1,"max_tokens":1,"temperature":1,' ..
  '"top_p":1,"top_k":0,"raw_output":true,' ..
  (stream and '"stream":true,"perf_metrics_in_response":true}' or '"stream":false}')
