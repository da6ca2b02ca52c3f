-- DeploymentSampler: order, shapes, options, per-item errors, and retries under
-- the emulator's fault injection with nothing lost or duplicated.
local fx = require("client_fixture")

local info, fw

local function setup()
  if not info then
    fw = fx.fw()
    info = fx.ready_deployment("sampler")
  end
end

local PROMPTS = {"alpha", {5, 6, 7}, "gamma gamma", {100}, "epsilon", {1, 2}, "eta", {42, 43}}

local function signature(groups)
  local out = {}
  for i, g in ipairs(groups) do
    for j, c in ipairs(g) do
      out[#out + 1] = i .. ":" .. j .. ":" .. table.concat(c.tokens, ",")
    end
  end
  return out
end

describe("DeploymentSampler", function()
  before_each(setup)
  after_each(function() if fw then fw:set_faults("") end end)

  it("returns n completions per prompt in input order", function()
    local s = fw:sampler{deployment = info, concurrency = 4}
    local groups = s:sample{prompts = PROMPTS, n = 3, max_tokens = 4, seed = 11, logprobs = true}
    assert.equal(#PROMPTS, #groups)
    for i, g in ipairs(groups) do
      assert.equal(3, #g)
      for _, c in ipairs(g) do
        assert.equal("string", type(c.text))
        assert.equal(4, #c.tokens)
        assert.equal(4, #c.logprobs)
        assert.equal(4, #c.sampling_logprobs)
        assert.equal("length", c.finish_reason)
        assert.equal("string", type(c.snapshot_identity))
        for _, lp in ipairs(c.logprobs) do assert.truthy(lp <= 0) end
      end
      if type(PROMPTS[i]) == "table" then assert.same(PROMPTS[i], g[1].prompt_tokens) end
    end
    assert.equal(5, #groups[1][1].prompt_tokens)  -- "alpha", one byte per token
    -- Each sample of one request stands alone: same prompt and seed, same tokens.
    local again = s:sample{prompts = {PROMPTS[1]}, n = 1, max_tokens = 4, seed = 11}
    assert.same(groups[1][1].tokens, again[1][1].tokens)
  end)

  it("gives sample j of a prompt seed + j - 1", function()
    local s = fw:sampler{deployment = info}
    local three = s:sample{prompts = {"seeded"}, n = 3, max_tokens = 6, seed = 100}
    local third = s:sample{prompts = {"seeded"}, n = 1, max_tokens = 6, seed = 102}
    assert.same(third[1][1].tokens, three[1][3].tokens)
  end)

  -- The SDK's _parse_completions_result with echo: P + C - 1 training-aligned logprobs,
  -- logprobs_echoed, the prompt prefix removed from the completion ids, text as sent.
  it("supports stop, echo (SDK-aligned P+C-1 logprobs), top_logprobs", function()
    local s = fw:sampler{model = info.inference_model}
    for _, stream in ipairs({true, false}) do
      local g = s:sample{prompts = {"abc"}, max_tokens = 3, echo = true, logprobs = true,
        temperature = 0,
        stream = stream}
      local c = g[1][1]
      assert.equal(3, #c.tokens)
      assert.equal(3, c.completion_len)
      assert.equal(3, c.prompt_len)
      assert.equal(3 + 3 - 1, #c.inference_logprobs)
      assert.equal(3 + 3 - 1, #c.sampling_logprobs)
      assert.truthy(c.logprobs_echoed)
      local plain = s:sample{prompts = {"abc"}, max_tokens = 3, temperature = 0,
        logprobs = true}[1][1]
      assert.falsy(plain.logprobs_echoed)
      assert.equal("abc" .. plain.text, c.text)
      assert.same(plain.tokens, c.tokens)
      -- The completion's logprobs are the last C entries of the aligned list.
      for k = 1, 3 do
        assert.truthy(math.abs(plain.inference_logprobs[k] - c.inference_logprobs[2 + k]) < 1e-5)
      end
    end
    local top = s:sample{prompts = {"abc"}, max_tokens = 2, top_logprobs = 3}
    assert.equal(2, #top[1][1].top_logprobs)
    local n = 0
    for _ in pairs(top[1][1].top_logprobs[1]) do n = n + 1 end
    assert.equal(3, n)
  end)

  -- The SDK's SampledCompletion fields; tokens / prompt_tokens / logprobs stay (the recipes use
  -- them).
  it("returns SampledCompletion fields under the SDK's names", function()
    local s = fw:sampler{deployment = info}
    local c = s:sample{prompts = {{7, 8, 9}}, max_tokens = 4, logprobs = true, seed = 3}[1][1]
    assert.same({7, 8, 9}, c.prompt_tokens)
    assert.equal(3, c.prompt_len)
    assert.equal(#c.tokens, c.completion_len)
    assert.equal(c.prompt_len + c.completion_len, #c.full_tokens)
    for i = 1, 3 do assert.equal(c.prompt_tokens[i], c.full_tokens[i]) end
    for i, t in ipairs(c.tokens) do assert.equal(t, c.full_tokens[3 + i]) end
    assert.equal(c.logprobs, c.inference_logprobs)
    assert.equal(#c.tokens, #c.sampling_logprobs)
    assert.equal("string", type(c.finish_reason))
  end)

  -- The SDK's max_seq_len: a prompt of max_seq_len tokens or more is not sampled, and a completion
  -- whose full_tokens exceed it is dropped.
  it("filters by max_seq_len as the SDK does", function()
    local s = fw:sampler{deployment = info}
    local g = s:sample{prompts = {{1, 2, 3, 4, 5}, {1, 2}, "ab"}, n = 2, max_tokens = 4,
      max_seq_len = 5,
      temperature = 0}
    assert.equal(3, #g)
    assert.equal(0, #g[1])  -- 5 >= 5: not sent
    for _, c in ipairs(g[2]) do assert.truthy(#c.full_tokens <= 5) end
    local long = s:sample{prompts = {{1, 2}}, n = 2, max_tokens = 4, temperature = 0}[1]
    local expect = #long[1].full_tokens <= 5 and 2 or 0
    assert.equal(expect, #g[2])
    assert.equal(s:sample{prompts = {{1, 2, 3, 4}}, max_tokens = 1, max_seq_len = 4}[1][1], nil)
  end)

  -- The SDK's sample_with_prompt_tokens: integer stops are decoded with the tokenizer.
  it("decodes integer stop tokens with the model's tokenizer", function()
    local s = fw:sampler{deployment = info}
    local free = s:sample{prompts = {"hello"}, max_tokens = 12, temperature = 0}[1][1]
    assert.truthy(#free.tokens >= 2)
    local stop_id = free.tokens[2]
    local stopped = s:sample{prompts = {"hello"}, max_tokens = 12, temperature = 0,
      stop = {stop_id}}[1][1]
    assert.equal("stop", stopped.finish_reason)
    local at = free.text:find(string.char(stop_id), 1, true)
    assert.equal(free.text:sub(1, at - 1), stopped.text)
    assert.error_matches(function() s:sample{prompts = {"x"}, stop = {1, "a"}} end,
      "strings or of token ids")
    assert.error_matches(function() s:sample{prompts = {"x"}, stop = {256}} end, "no text")
    local decode_calls = 0
    local custom = fw:sampler{deployment = info, tokenizer = {decode = function(_, ids)
      decode_calls = decode_calls + 1
      return string.char(ids[1])
    end}}
    custom:sample{prompts = {"x"}, max_tokens = 1, stop = {65}}
    assert.equal(1, decode_calls)
  end)

  -- The SDK's request_context: recognised keys attached to the structured error.
  it("attaches request_context and sampling_context to structured errors", function()
    local s = fw:sampler{model = "accounts/local/deployments/missing-ctx", hotload_max_retries = 0,
      request_context = {run = "r1", step = 4, secret = "dropped"}}
    local g = s:sample{prompts = {"a"}, max_tokens = 1, on_error = "return",
      sampling_context = {group = 2}}
    local e = g[1][1].error
    assert.same({run = "r1", step = 4, group = 2}, e.context)
    assert.truthy(e.message:find("run=r1 step=4 group=2", 1, true))
    local ok, raised = pcall(s.sample, s, {prompts = {"a"}, max_tokens = 1})
    assert.falsy(ok)
    assert.same({run = "r1", step = 4}, raised.context)
  end)

  -- Streaming (the SDK's async_completions_stream) gives the same samples as a plain answer,
  -- with the server's perf_metrics and the client's time to first token.
  it("streams when asked, with server metrics per completion and per step", function()
    local s = fw:sampler{deployment = info, concurrency = 4, stream = true}
    local streamed = s:sample{prompts = PROMPTS, max_tokens = 5, seed = 5, logprobs = true}
    local plain = s:sample{prompts = PROMPTS, max_tokens = 5, seed = 5, logprobs = true,
      stream = false}
    assert.same(signature(plain), signature(fw:sampler{deployment = info}:sample{prompts = PROMPTS,
      max_tokens = 5, seed = 5}))
    assert.same(signature(plain), signature(streamed))
    for i, g in ipairs(streamed) do
      local m, pm = g[1].metrics, plain[i][1].metrics
      assert.equal(g[1].text, plain[i][1].text)
      assert.truthy(m.client_ttft > 0 and m.server_ttft > 0 and m.prefill_queue_duration >= 0)
      assert.truthy(m.num_concurrent_requests >= 1 and m.server_processing_time >= m.server_ttft)
      assert.equal(#g[1].prompt_tokens, m.prompt_tokens)
      assert.equal(0, m.cached_prompt_tokens)
      assert.equal(nil, pm.client_ttft)  -- measured on streams only, as by the SDK
      assert.truthy(pm.server_ttft > 0 and pm.generation_queue_duration >= 0)
    end
    local step = s:step_completed()
    assert.equal(4, step.window)
    assert.equal(2 * #PROMPTS, step.completions)
    assert.truthy(step.avg_server_ttft > 0 and step.max_server_ttft >= step.avg_server_ttft)
    assert.truthy(step.avg_client_ttft > 0)
    assert.equal(0, s:step_completed().completions)  -- a new step began
  end)

  it("works with the future form and several batches at once", function()
    local s = fw:sampler{deployment = info, concurrency = 3}
    local f1 = s:submit{prompts = {"one", "two"}, n = 2, max_tokens = 2, seed = 1}
    local f2 = s:submit{prompts = {"three"}, n = 4, max_tokens = 2, seed = 2}
    local g2 = f2:wait()
    local g1 = f1:wait()
    assert.equal(2, #g1)
    assert.equal(4, #g2[1])
    assert.truthy(f1:done())
  end)

  it("validates options with their names", function()
    local s = fw:sampler{deployment = info}
    assert.error_matches(function() s:sample{prompts = {"x"}, max_token = 3} end,
      "did you mean 'max_tokens'")
    assert.error_matches(function() s:sample{prompts = {"x"}, n = 0} end, "n must be >= 1")
    assert.error_matches(function() s:sample{prompts = {"x"}, temperature = "hot"} end,
      "temperature.*number")
    assert.error_matches(function() s:sample{prompts = {{1, "a"}}} end, "prompts%[1%]%[2%]")
    assert.error_matches(function() s:sample{prompts = {true}} end, "prompts%[1%]")
    assert.error_matches(function() s:sample{} end, "prompts")
    assert.error_matches(function() fw:sampler{} end, "deployment = info or model")
    assert.error_matches(function() fw:sampler{deployment = info, concurrency = "lots"} end,
      "adaptive")
    assert.error_matches(function() fw:sampler{deployment = info, concurency = 3} end,
      "did you mean 'concurrency'")
  end)

  it("returns per-item errors or raises, as the caller chose", function()
    local s = fw:sampler{model = "accounts/local/deployments/does-not-exist",
      hotload_max_retries = 1,
      hotload_retry_interval = 0.01}
    local g = s:sample{prompts = {"a", "b"}, n = 2, max_tokens = 2, on_error = "return"}
    assert.equal(2, #g)
    for _, grp in ipairs(g) do
      for _, c in ipairs(grp) do
        assert.equal("not_found", c.error.code)
        assert.equal(404, c.error.status)
        assert.truthy(c.error.message:find("does-not-exist", 1, true))
        assert.truthy(c.error.message:find("gave up after 2 attempts", 1, true))
      end
    end
    local ok, e = pcall(s.sample, s, {prompts = {"a"}, max_tokens = 2})
    assert.falsy(ok)
    assert.equal("not_found", e.code)
    assert.falsy(tostring(e):find(fw.api_key, 1, true))
    -- A 400 is not retried.
    local bad = fw:sampler{deployment = info}
    local g2 = bad:sample{prompts = {{999999}}, max_tokens = 2, on_error = "return"}
    assert.equal("invalid_argument", g2[1][1].error.code)
    assert.equal(1, bad:stats().requests)
  end)

  -- libcurl itself resends a request whose reused connection died before any
  -- answer, so resets are not all visible as sampler retries.
  local function faulted(spec, every_fault_retried, stream)
    local s = fw:sampler(fx.fast_retry{deployment = info, concurrency = 8, max_attempts = 12,
      stream = stream})
    local reference = signature(s:sample{prompts = PROMPTS, n = 4, max_tokens = 3, seed = 7})
    fw:set_faults(spec)
    local groups = s:sample{prompts = PROMPTS, n = 4, max_tokens = 3, seed = 7}
    local injected = fw:faults().rules[1].injected
    fw:set_faults("")
    assert.truthy(injected > 0, "the fault was injected")
    assert.same(reference, signature(groups))
    if every_fault_retried ~= false then assert.truthy(s:stats().retries >= injected) end
    return s
  end

  it("retries 429s and loses or duplicates nothing", function()
    faulted("/inference/v1/completions:429:rate=0.3:seed=3:retry_after=0")
  end)

  it("retries 503s", function()
    faulted("/inference/v1/completions:503:rate=0.3:seed=4:retry_after=0")
  end)

  it("retries reset connections", function()
    faulted("/inference/v1/completions:reset:rate=0.2:seed=5", false)
  end)

  it("retries truncated bodies", function()
    faulted("/inference/v1/completions:truncate:rate=0.3:seed=6")
  end)

  -- The SDK's _SSETruncationError: a stream closed before [DONE] is retried.
  it("retries streams cut mid-generation", function()
    faulted("/inference/v1/completions:truncate:rate=0.3:seed=8", true, true)
  end)

  it("honours Retry-After", function()
    local s = fw:sampler(fx.fast_retry{deployment = info})
    fw:set_faults("/inference/v1/completions:429:count=1:retry_after=1")
    local t0 = flare.clock()
    local g = s:sample{prompts = {"wait"}, max_tokens = 1}
    assert.truthy(flare.clock() - t0 >= 0.95, "waited for Retry-After")
    assert.equal(1, #g[1][1].tokens)
    assert.equal(1, s:stats().rate_limited)
  end)

  it("rides out a deployment scaling up from zero", function()
    local mine = fx.ready_deployment("scale")
    fw.deployments:scale_to_zero(mine.deployment_id)
    fw.deployments:update(mine.deployment_id, {max_replica_count = 1})
    local s = fw:sampler(fx.fast_retry{deployment = mine})
    local g = s:sample{prompts = {"up"}, n = 2, max_tokens = 2}
    assert.equal(2, #g[1])
    assert.truthy(s:stats().retries >= 1)
  end)

  -- The SDK's AdaptiveConcurrencyController is the default: window 16 in [1, 256], prefill-queue
  -- target 0.5 s, EMA alpha 0.3, adjusted every 32 requests.
  it("uses the SDK's adaptive controller by default", function()
    local s = fw:sampler{deployment = info}
    assert.equal(16, s:window_size())
    local step = s:step_completed()
    assert.equal(16, step.window)
    assert.equal(0, step.requests)
    -- 31 fast requests: no adjustment yet; the 32nd adjusts (+ additive increase x headroom, at
    -- most 4x).
    s:sample{prompts = {"a"}, n = 31, max_tokens = 1}
    assert.equal(16, s:window_size())
    s:sample{prompts = {"a"}, n = 1, max_tokens = 1}
    local w = s:window_size()
    assert.truthy(w > 16 and w <= 20, "grew by at most 4, now " .. w)
    local fixed = fw:sampler{deployment = info, concurrency = 8}
    fixed:sample{prompts = {"a"}, n = 40, max_tokens = 1}
    assert.equal(8, fixed:window_size())
    local fs = fixed:step_completed()
    assert.equal(8, fs.window)
    assert.equal(40, fs.completions)
    assert.equal(nil, fs.avg_pq)  -- a fixed window does not adjust
  end)

  -- The SDK's multiplicative decrease (x0.5) once the EMA of the prefill queue exceeds the target,
  -- on the emulator's measured queue: long requests from a wide window load its two engine workers.
  it("shrinks the window when the prefill queue exceeds the target, grows it when idle", function()
    -- The target is far below what 64 requests of 96 tokens wait on two workers (several ms even
    -- on a fast, idle machine), so the check does not hang on the machine's speed.
    local s = fw:sampler{deployment = info, initial_window = 64, prefill_queue_target = 0.0005,
      adjustment_interval = 16}
    local long = {}
    for i = 1, 128 do long[i] = string.rep(string.char(97 + i % 20), 120) end
    s:sample{prompts = long, max_tokens = 96}
    local step = s:step_completed()
    assert.truthy(step.ema_pq > 0.0005, "the queue was loaded: ema " .. tostring(step.ema_pq))
    assert.truthy(s:window_size() < 64, "window shrank, now " .. s:window_size())
    local shrunk = s:window_size()
    -- Idle: one request at a time finds no queue; each interval adds up to 4 (headroom capped at
    -- 4x).
    local idle = fw:sampler{deployment = info, concurrency = "adaptive", initial_window = 2,
      adjustment_interval = 8}
    for _ = 1, 4 do idle:sample{prompts = {"i"}, n = 8, max_tokens = 1} end
    assert.truthy(idle:window_size() > 2, "window grew, now " .. idle:window_size())
    assert.truthy(idle:window_size() <= 2 + 4 * 4)
    assert.truthy(shrunk >= 1)
  end)
end)

-- A completions route of an older server: logprob entries without sampling_logprob, and the
-- metrics as "fireworks-"-prefixed, capitalised headers.
local LEGACY_SERVER = [[
import http.server, json, os, socketserver, sys, threading, time
owner = int(sys.argv[1])
def watch():
    start = time.time()
    while time.time() - start < 120:
        try:
            os.kill(owner, 0)
        except OSError:
            break
        time.sleep(0.2)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        choice = {"index": 0, "text": "hi", "finish_reason": "length",
                  "logprobs": {"content": [{"token": "h", "logprob": -1.5},
                                           {"token": "i", "logprob": -0.5}]},
                  "raw_output": {"prompt_token_ids": req["prompt"],
                                 "completion_token_ids": [104, 105]}}
        body = json.dumps({"choices": [choice], "model": req["model"],
                           "usage": {"completion_tokens": 2}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Fireworks-Prefill-Queue-Duration", "0.25")
        self.send_header("Num-Concurrent-Requests", "3")
        self.end_headers()
        self.wfile.write(body)
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
s = S(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
]]

local function start_legacy_server()
  local ffi = require("ffi")
  pcall(ffi.cdef, "int getpid(void);")
  local port_file = os.tmpname()
  os.execute("python3 -u -c " .. fx.shell_quote(LEGACY_SERVER) .. " " .. ffi.C.getpid() ..
    " >" .. port_file .. " 2>&1 &")
  local port
  for _ = 1, 200 do
    local f = io.open(port_file)
    port = f and tonumber(f:read("*l"))
    if f then f:close() end
    if port then break end
    os.execute("sleep 0.05")
  end
  os.remove(port_file)
  assert(port, "the legacy test server did not start")
  return "http://127.0.0.1:" .. port
end

-- The SDK's _warn_missing_sampling_logprob_fallback: raw logprobs stand in for a missing
-- sampling_logprob only under full-distribution sampling, with one warning.
describe("DeploymentSampler against a server without sampling_logprob", function()
  it("falls back only at T=1, top_p=1, top_k=0 and warns once each way", function()
    local base = start_legacy_server()
    local legacy = flare.connect{api_key = fx.KEY, base_url = base, account_id = "legacy",
      quiet = true}
    local s = legacy:sampler{model = "accounts/legacy/deployments/old", concurrency = 2}
    for _ = 1, 2 do
      local c = s:sample{prompts = {{1, 2}}, max_tokens = 2, logprobs = true}[1][1]
      assert.same({-1.5, -0.5}, c.inference_logprobs)
      assert.same(c.inference_logprobs, c.sampling_logprobs)
      assert.equal(0.25, c.metrics.prefill_queue_duration)
      assert.equal(3, c.metrics.num_concurrent_requests)
    end
    assert.equal(1, #s:stats().warnings)
    assert.truthy(s:stats().warnings[1]:find("temperature=1, top_p=1, top_k=0", 1, true))
    for _ = 1, 2 do
      local c = s:sample{prompts = {{1, 2}}, max_tokens = 2, logprobs = true,
        temperature = 0.7}[1][1]
      assert.same({-1.5, -0.5}, c.inference_logprobs)
      assert.equal(nil, c.sampling_logprobs)
    end
    assert.equal(2, #s:stats().warnings)
    assert.truthy(s:stats().warnings[2]:find("sampling_logprobs left empty", 1, true))
  end)
end)
