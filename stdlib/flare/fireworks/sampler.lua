-- flare.fireworks.sampler: DeploymentSampler (fw:sampler{...}).
--   local s = fw:sampler{deployment = info | model = "accounts/<a>/deployments/<id>",
--       concurrency = 64 | "adaptive", adaptive_initial = 16, adaptive_min = 1, adaptive_max = 256,
--       timeout_s = 600, max_attempts = 7, backoff_initial_s = 2, backoff_max_s = 30,
--       not_ready_attempts = 10, not_ready_interval_s = 5, on_error = "raise"}
--   s:sample{prompts = {...} (strings or token-id lists), n = 1, max_tokens = 16,
--       temperature = 1.0, top_p = 1.0, top_k = 0, stop = nil, seed = nil, logprobs = false,
--       top_logprobs = 0, echo = false, prompt_cache_max_len = nil, on_error = <sampler's>}
--     -> groups in input order: groups[i][j] = {text, tokens, logprobs, sampling_logprobs,
--        finish_reason, snapshot_identity, prompt_tokens (ids), top_logprobs?, prompt_logprobs?}
--        or, with on_error = "return", {error = {code, message, status, retryable, request_id}}
--        for a sample that failed after its retries.
--   s:submit{...} -> future (f:wait() gives the groups); s:stats() -> {requests, retries,
--   rate_limited, limit, in_flight}.
-- Each sample is its own n=1 request (sample j of a prompt gets seed + j - 1 when seed is set);
-- all of them share the one event loop with everything else in flight.
local options = require("flare.fireworks.options")
local future = require("flare.fireworks.future")

local M = {}
M.__index = M

local spec = {
  deployment = "table", model = "string", concurrency = "integer|string",
    adaptive_initial = "integer",
  adaptive_min = "integer", adaptive_max = "integer", queue_target_s = "number",
    timeout_s = "number",
  max_attempts = "integer", backoff_initial_s = "number", backoff_max_s = "number",
  not_ready_attempts = "integer", not_ready_interval_s = "number", on_error = "string",
}

local sample_spec = {
  prompts = "table", n = "integer", max_tokens = "integer", temperature = "number",
    top_p = "number",
  top_k = "integer", stop = "string|table", seed = "integer", logprobs = "boolean",
    top_logprobs = "integer",
  echo = "boolean", prompt_cache_max_len = "integer", on_error = "string",
}

function M.new(fw, opts)
  opts = options.check(opts, spec, "sampler")
  local model = opts.model
  if opts.deployment then
    model = opts.deployment.inference_model
    if type(model) ~= "string" then
      options.raise("invalid_argument",
        "sampler: 'deployment' must be a DeploymentInfo (with inference_model)")
    end
  end
  if not model then options.raise("invalid_argument",
    "sampler: give deployment = info or model = \"...\"") end
  local native_opts = {model = model}
  for k, v in pairs(opts) do
    if k ~= "deployment" and k ~= "model" and k ~= "concurrency" and
      k ~= "on_error" then native_opts[k] = v end
  end
  if opts.concurrency == "adaptive" then
    native_opts.adaptive = true
  elseif type(opts.concurrency) == "string" then
    options.raise("invalid_argument",
      "sampler: concurrency must be a number or \"adaptive\", got \"" ..
      opts.concurrency .. "\"")
  elseif opts.concurrency then
    if opts.concurrency < 1 then options.raise("invalid_argument",
      "sampler: concurrency must be >= 1") end
    native_opts.concurrency = opts.concurrency
  end
  local on_error = opts.on_error or "raise"
  if on_error ~= "raise" and on_error ~= "return" then
    options.raise("invalid_argument", "sampler: on_error must be \"raise\" or \"return\"")
  end
  return setmetatable({fw = fw, model = model, on_error = on_error,
    native = fw:_native():sampler(native_opts)}, M)
end

function M:__tostring()
  return "DeploymentSampler(" .. self.model .. ")"
end

local function check_params(p)
  options.check(p, sample_spec, "sample")
  if type(p.prompts) ~= "table" then options.raise("invalid_argument",
    "sample: 'prompts' (a list) is required") end
  if p.n and p.n < 1 then options.raise("invalid_argument",
    "sample: n must be >= 1, got " .. p.n) end
  if p.max_tokens and p.max_tokens < 0 then options.raise("invalid_argument",
    "sample: max_tokens must be >= 0") end
  if p.temperature and p.temperature < 0 then options.raise("invalid_argument",
    "sample: temperature must be >= 0") end
  if p.top_p and (p.top_p <= 0 or p.top_p > 1) then options.raise("invalid_argument",
    "sample: top_p must be in (0, 1]") end
  if p.top_k and p.top_k < 0 then options.raise("invalid_argument",
    "sample: top_k must be >= 0") end
end

function M:submit(p)
  check_params(p)
  local args = p
  if p.on_error == nil then
    args = {}
    for k, v in pairs(p) do args[k] = v end
    args.on_error = self.on_error
  end
  return future.new(self.native:submit(args))
end

function M:sample(p)
  return self:submit(p):wait()
end

function M:stats()
  return self.native:stats()
end

return M
