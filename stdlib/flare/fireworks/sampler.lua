-- flare.fireworks.sampler: DeploymentSampler (fw:sampler{...}), with the Fireworks SDK's names
-- and defaults.
--   local s = fw:sampler{deployment = info | model = "accounts/<a>/deployments/<id>",
--       concurrency = "adaptive" (default: the SDK's AdaptiveConcurrencyController)
--         | N (a fixed window),
--       initial_window = 16, min_window = 1, max_window = 256, prefill_queue_target = 0.5,
--       additive_increase = 1, multiplicative_decrease = 0.5, ema_alpha = 0.3,
--       adjustment_interval = 32, stream = false, timeout_s = 600, max_attempts = 7,
--       backoff_initial_s = 2, backoff_max_s = 30, hotload_max_retries = 10,
--       hotload_retry_interval = 5, on_error = "raise",
--       tokenizer = {decode = function(self, ids) ... end} (byte-level for the emulator's models),
--       request_context = {session=, run=, checkpoint=, step=, group=, item=}}
--   s:sample{prompts = {...} (strings or token-id lists), n = 1, max_tokens = 16,
--       temperature = 1.0, top_p = 1.0, top_k = 0,
--       stop = nil (strings, or token ids decoded with the tokenizer),
--       seed = nil, logprobs = false, top_logprobs = 0, echo = false, prompt_cache_max_len = nil,
--       max_seq_len = nil, stream = <sampler's>, sampling_context = nil, on_error = <sampler's>}
--     -> groups in input order: groups[i][j] = a SampledCompletion {text, full_tokens,
--        prompt_len, completion_len, finish_reason, inference_logprobs?, sampling_logprobs?,
--        logprobs_echoed, top_logprobs?, tokens (completion ids), prompt_tokens,
--        logprobs (= inference_logprobs), snapshot_identity, metrics = {prefill_queue_duration,
--        generation_queue_duration, server_ttft, client_ttft, num_concurrent_requests,
--        prompt_tokens, cached_prompt_tokens, server_processing_time}}
--        or, with on_error = "return", {error = {code, message, status, retryable, request_id,
--        context?}} for a sample that failed after its retries. With max_seq_len, a prompt of
--        max_seq_len tokens or more gets no completions and a completion longer than it in all
--        is left out, so a group may hold fewer than n.
--   s:submit{...} -> future (f:wait() gives the groups); s:stats() -> {requests, retries,
--   rate_limited, limit, in_flight, warnings}; s:step_completed() -> the step's summary
--   {window, requests, avg_pq, window_after, ema_pq, completions, avg_*/max_* of each metric}.
-- Each sample is its own n=1 request (sample j of a prompt gets seed + j - 1 when seed is set);
-- all of them share the one event loop with everything else in flight.
local options = require("flare.fireworks.options")
local future = require("flare.fireworks.future")

local M = {}
M.__index = M

-- The SDK always streams (async_completions_stream); flare asks for one JSON body unless
-- stream = true: bench/sampler measured streaming at half the throughput and twice the client
-- CPU per request, and the server's metrics come in the headers either way (only client_ttft
-- needs the stream).
M.DEFAULT_STREAM = false

local spec = {
  deployment = "table", model = "string", concurrency = "integer|string",
    initial_window = "integer",
  min_window = "integer", max_window = "integer", prefill_queue_target = "number",
    additive_increase = "number",
  multiplicative_decrease = "number", ema_alpha = "number", adjustment_interval = "integer",
  -- earlier names of the controller's settings
  adaptive_initial = "integer", adaptive_min = "integer", adaptive_max = "integer",
    queue_target_s = "number",
  stream = "boolean", timeout_s = "number", max_attempts = "integer", backoff_initial_s = "number",
  backoff_max_s = "number", hotload_max_retries = "integer", hotload_retry_interval = "number",
  not_ready_interval_s = "number", on_error = "string", tokenizer = "table",
    request_context = "table",
}

local sample_spec = {
  prompts = "table", n = "integer", max_tokens = "integer", temperature = "number",
    top_p = "number",
  top_k = "integer", stop = "string|table", seed = "integer", logprobs = "boolean",
    top_logprobs = "integer",
  echo = "boolean", prompt_cache_max_len = "integer", on_error = "string", max_seq_len = "integer",
  stream = "boolean", sampling_context = "table",
}

local renamed = {adaptive_initial = "initial_window", adaptive_min = "min_window",
  adaptive_max = "max_window",
  queue_target_s = "prefill_queue_target", hotload_max_retries = "not_ready_retries",
  hotload_retry_interval = "not_ready_interval_s"}
local local_only = {deployment = true, model = true, concurrency = true, on_error = true,
  stream = true,
  tokenizer = true, request_context = true}

-- The emulator's models read bytes: token t < 256 is byte t, the rest are special tokens.
M.byte_tokenizer = {
  decode = function(_, ids)
    local out = {}
    for i, t in ipairs(ids) do
      if t < 0 or t >= 258 then
        error("token id " .. t .. " is outside the vocabulary [0, 258)", 0)
      end
      out[i] = t < 256 and string.char(t) or ""
    end
    return table.concat(out)
  end,
}

-- The non-sensitive context keys the SDK keeps (sampling_observability.CONTEXT_KEYS).
local CONTEXT_KEYS = {"session", "run", "checkpoint", "step", "group", "item"}

local function clean_context(into, raw)
  if type(raw) ~= "table" then return end
  for _, k in ipairs(CONTEXT_KEYS) do
    if raw[k] ~= nil then into[k] = raw[k] end
  end
end

function M.new(fw, opts)
  if type(opts) == "table" and opts.backend == "openai" then  -- any OpenAI-compatible server
    return require("flare.openai")._from_fw(fw, opts)
  end
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
  local native_opts = {model = model, adaptive = true}
  for k, v in pairs(opts) do
    if not local_only[k] then native_opts[renamed[k] or k] = v end
  end
  if opts.concurrency == nil or opts.concurrency == "adaptive" then
    native_opts.adaptive = true
  elseif type(opts.concurrency) == "string" then
    options.raise("invalid_argument",
      "sampler: concurrency must be a number or \"adaptive\", got \"" ..
      opts.concurrency .. "\"")
  else
    if opts.concurrency < 1 then options.raise("invalid_argument",
      "sampler: concurrency must be >= 1") end
    native_opts.adaptive = false
    native_opts.concurrency = opts.concurrency
  end
  local on_error = opts.on_error or "raise"
  if on_error ~= "raise" and on_error ~= "return" then
    options.raise("invalid_argument", "sampler: on_error must be \"raise\" or \"return\"")
  end
  local tokenizer = opts.tokenizer
  if tokenizer and type(tokenizer.decode) ~= "function" then
    options.raise("invalid_argument", "sampler: tokenizer must have a decode(self, ids) method")
  end
  if not tokenizer and fw.backend == "emulator" then tokenizer = M.byte_tokenizer end
  local stream = opts.stream
  if stream == nil then stream = M.DEFAULT_STREAM end
  return setmetatable({fw = fw, model = model, on_error = on_error, stream = stream,
    tokenizer = tokenizer,
    request_context = opts.request_context, native = fw:_native():sampler(native_opts)}, M)
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
  if p.max_seq_len and p.max_seq_len < 1 then options.raise("invalid_argument",
    "sample: max_seq_len must be >= 1") end
end

-- The SDK's sample_with_prompt_tokens: string stops are sent as they are; token-id stops are
-- decoded with the tokenizer one by one (skip_special_tokens=False), since the completions API
-- takes only strings; a mixed list is refused.
function M:_stops(stop)
  if type(stop) ~= "table" then return stop end
  local strings, ints = 0, 0
  for _, s in ipairs(stop) do
    if type(s) == "string" then
      strings = strings + 1
    elseif type(s) == "number" and s == math.floor(s) then
      ints = ints + 1
    end
  end
  if strings == #stop then return stop end
  if ints ~= #stop then options.raise("invalid_argument",
    "sample: stop must be a list of strings or of token ids") end
  if not self.tokenizer then
    options.raise("invalid_argument",
      "sample: a tokenizer is required to turn stop token ids into the " ..
      "stop strings the completions API takes (fw:sampler{tokenizer = ...})")
  end
  local out = {}
  for i, id in ipairs(stop) do
    local ok, text = pcall(self.tokenizer.decode, self.tokenizer, {id})
    if not ok then options.raise("invalid_argument",
      "sample: stop[" .. i .. "]: " .. tostring(text)) end
    if type(text) ~= "string" or text == "" then
      options.raise("invalid_argument", "sample: stop[" .. i .. "] (token " .. id ..
        ") has no text in the model's tokenizer, so it cannot be a stop string")
    end
    out[i] = text
  end
  return out
end

-- The context attached to this call's errors: the sampler's request_context, then the call's
-- sampling_context, recognised keys only.
function M:_context(p)
  local ctx = {}
  clean_context(ctx, self.request_context)
  clean_context(ctx, p.sampling_context)
  if next(ctx) == nil then return nil end
  return ctx
end

local function context_text(ctx)
  local parts = {}
  for _, k in ipairs(CONTEXT_KEYS) do
    if ctx[k] ~= nil then parts[#parts + 1] = k .. "=" .. tostring(ctx[k]) end
  end
  return table.concat(parts, " ")
end

local function attach_context(err, ctx)
  if type(err) ~= "table" or not ctx then return err end
  err.context = ctx
  if type(err.message) == "string" then err.message = err.message .. " (" .. context_text(ctx) ..
    ")" end
  return err
end

function M:submit(p)
  check_params(p)
  local args = {}
  for k, v in pairs(p) do args[k] = v end
  if args.on_error == nil then args.on_error = self.on_error end
  if args.stream == nil then args.stream = self.stream end
  args.stop = self:_stops(p.stop)
  args.max_seq_len, args.sampling_context = nil, nil
  local ctx = self:_context(p)
  -- The SDK's max_seq_len pre-filter: a token prompt of max_seq_len tokens or more is not sent.
  local limit, kept = p.max_seq_len, nil
  if limit then
    local prompts = {}
    kept = {}
    for i, prompt in ipairs(p.prompts) do
      if not (type(prompt) == "table" and #prompt >= limit) then
        prompts[#prompts + 1] = prompt
        kept[#prompts] = i
      end
    end
    args.prompts = prompts
  end
  local native = self.native:submit(args)
  local count = #p.prompts
  return future.new({
    wait = function(_, timeout_s)
      local ok, groups = pcall(native.wait, native, timeout_s)
      if not ok then error(attach_context(groups, ctx), 0) end
      if ctx then
        for _, g in ipairs(groups) do
          for _, c in ipairs(g) do
            if c.error then attach_context(c.error, ctx) end
          end
        end
      end
      if not limit then return groups end
      -- And its post-filter: a completion longer than max_seq_len in all is left out.
      local out = {}
      for i = 1, count do out[i] = {} end
      for j, g in ipairs(groups) do
        local group = out[kept[j]]
        for _, c in ipairs(g) do
          if c.error or #c.full_tokens <= limit then group[#group + 1] = c end
        end
      end
      return out
    end,
    done = function() return native:done() end,
    cancel = function() native:cancel() end,
  })
end

function M:sample(p)
  return self:submit(p):wait()
end

function M:stats()
  return self.native:stats()
end

-- The SDK's concurrency_controller.step_completed(): the step's window, request count, average
-- prefill queue (avg_pq), window after the adjustment and EMA, with the step's server metrics
-- (avg_/max_ of prefill_queue_duration, generation_queue_duration, server_ttft, client_ttft,
-- server_processing_time, num_concurrent_requests); then a new step begins.
function M:step_completed()
  return self.native:step_completed()
end

function M:window_size()
  return self.native:window_size()
end

return M
