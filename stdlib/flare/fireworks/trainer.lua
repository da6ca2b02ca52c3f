-- flare.fireworks.trainer: a trainer job (rlorTrainerJobs) and its Tinker-shaped API.
--   local t = fw:trainer{base_model = (required), lora_rank = 0, lora_alpha = 32,
--       train_unembed = true,
--       learning_rate = 1e-5 (the SDK's), hot_load_deployment_id = nil, job_id = "flare-<8 hex>",
--       display_name = nil, max_context_length = nil, timeout_s = 900,
--       poll_interval_s = fw:poll_interval("trainer"),
--       quiet = nil}
--     creates the job (or attaches to an existing one with that job_id) and waits until it is
--     RUNNING and GET <trainer>/api/v1/healthz answers 200.
--   t:forward_backward(datums, loss_fn = "cross_entropy", config = nil)
--       -> {loss_fn_outputs = {{logprobs = {...}}, ...}, metrics = {...}}
--       a datum is the protocol's {model_input = {chunks = ...}, loss_fn_inputs = {...}} or
--       the short form {tokens = {...}, target_tokens = {...}, weights =, logprobs =, advantages =,
--       ref_logprobs =}
--       loss_fn: cross_entropy, importance_sampling, ppo, cispo (Tinker's names), grpo, dr_grpo,
--       gspo, reinforce, dpo; config (loss_fn_config): clip_low, clip_high (or Tinker's
--       clip_low_threshold / clip_high_threshold), normalization ("sum" | "token" | "sequence" |
--       "constant", with normalization_tokens), tis_cap, kl_beta, kl_estimator ("k1" | "k2" |
--       "k3"), dpo_beta. See docs/losses.md. metrics: loss, mean_ratio, clip_fraction,
--       logprob_mismatch (sampler vs trainer), kl (policy vs the datums' ref_logprobs, when
--       given), tis_fraction, preference_accuracy and reward_margin (dpo), tokens
--   t:forward_backward_custom(datums, loss_fn) -> as forward_backward; loss_fn(datums,
--       logprobs) -> loss, grads[, metrics] runs in the client (Tinker's custom loss: a forward
--       pass, then a cross_entropy pass weighted by -grads); flare.losses.new(name, config) is
--       any built-in loss computed this way, for a trainer service that lacks it
--   t:forward_custom(datums, loss_fn) -> the same loss and metrics, no gradient
--   t:forward(datums, loss_fn, config)  -- no gradient; a trainer that never steps is a
--       reference model: its loss_fn_outputs[i].logprobs are the reference logprobs
--   t:optim_step{learning_rate = <trainer's>, beta1 = 0.9, beta2 = 0.95, eps = 1e-12,
--       weight_decay = 0, grad_clip_norm = 0}  -> {grad_norm =, step =, metrics =}
--       grad_norm is the norm before clipping to grad_clip_norm (0 = no clipping)
--   lora_rank > 0 trains a LoRA adapter (rank 1 to 64) on every projection, the base frozen;
--   lora_alpha (the SDK's default 32) scales it by lora_alpha / lora_rank. train_unembed (the
--   SDK's name and default, true) also puts one on the output head (lm_head); false is sent
--   as trainingConfig.trainUnembed = false.
--   t:save_weights_for_sampler(name, {checkpoint_type = "base" | "delta" | "merged_base"})
--       -> {path =, snapshot_name =, ...}; a delta is made against this trainer's previous
--       sampler snapshot. With LoRA, "base" and "delta" both save the whole adapter (a PEFT
--       folder), "merged_base" the base with the adapter folded in
--   t:save_state(name), t:load_state(name)
--   t:list_checkpoints()  -> sorted names save_state saved ({} when the trainer cannot say, as
--       the SDK)
--   t:resolve_checkpoint_path(name, source_job_id) -> a reference load_state takes: name itself,
--       a full path ("gs://..." or "/...") as it is, or with source_job_id another job's
--       checkpoint ("cross_job://<job>/<name>")
--   t:close()  deletes the job
--   Each call X also has X_async(...) returning a future (see flare.fireworks.future).
local options = require("flare.fireworks.options")
local progress = require("flare.fireworks.progress")
local future = require("flare.fireworks.future")

local M = {}
M.__index = M
local raise = options.raise
local DEFAULT_LORA_ALPHA = 32  -- the SDK's create_training_client default

local spec = {
  base_model = "string", lora_rank = "integer", lora_alpha = "number", learning_rate = "number",
    train_unembed = "boolean", hot_load_deployment_id = "string",
  job_id = "string", display_name = "string", max_context_length = "integer", timeout_s = "number",
  poll_interval_s = "number", quiet = "boolean",
}

local terminal = {JOB_STATE_FAILED = true, JOB_STATE_CANCELLED = true, JOB_STATE_COMPLETED = true,
  JOB_STATE_DELETED = true}

function M.new(fw, opts)
  opts = options.check(opts, spec, "trainer")
  if not opts.base_model or opts.base_model == "" then raise("invalid_argument",
    "trainer: 'base_model' is required") end
  if opts.learning_rate and opts.learning_rate <= 0 then
    raise("invalid_argument", "trainer: learning_rate must be > 0, got " .. opts.learning_rate)
  end
  if opts.lora_rank and opts.lora_rank < 0 then
    raise("invalid_argument", "trainer: lora_rank must be >= 0, got " .. opts.lora_rank)
  end
  if opts.lora_alpha and opts.lora_alpha <= 0 then
    raise("invalid_argument", "trainer: lora_alpha must be > 0, got " .. opts.lora_alpha)
  end
  local self = setmetatable({fw = fw, base_model = opts.base_model, lora_rank = opts.lora_rank or 0,
    learning_rate = opts.learning_rate or 1e-5, job_id = opts.job_id or ("flare-" ..
      options.random_hex(8)),
    hot_load_deployment_id = opts.hot_load_deployment_id}, M)
  self.name = "accounts/" .. fw.account_id .. "/rlorTrainerJobs/" .. self.job_id
  self.gateway = "/training/v1/rlorTrainerJobs/" .. fw.account_id .. "/" ..
    self.job_id .. "/api/v1/"
  local training = {baseModel = self.base_model, loraRank = self.lora_rank,
    learningRate = self.learning_rate}
  if self.lora_rank > 0 then  -- the SDK's default alpha; ignored for full-weight training
    self.lora_alpha = opts.lora_alpha or DEFAULT_LORA_ALPHA
    training.loraAlpha = self.lora_alpha
    self.train_unembed = opts.train_unembed ~= false
    if not self.train_unembed then training.trainUnembed = false end
  end
  if opts.max_context_length then training.maxContextLength = opts.max_context_length end
  local body = {serviceMode = true, trainingConfig = training}
  if opts.hot_load_deployment_id then body.hotLoadDeploymentId = opts.hot_load_deployment_id end
  if opts.display_name then body.displayName = opts.display_name end
  local r = fw:request{method = "POST",
    path = "/v1/accounts/" .. fw.account_id .. "/rlorTrainerJobs?rlorTrainerJobId=" .. self.job_id,
    body = body, accept = {409}, what = "create trainer job " .. self.name}
  self.attached = r.status == 409
  -- Stopped while the job starts (Ctrl-C, SIGTERM, a job that fails): the caller has no
  -- handle to close yet, so a job this call created is deleted here.
  local ok, err = pcall(self._wait_running, self, opts.timeout_s or 900,
    opts.poll_interval_s or fw:poll_interval("trainer"), fw:_quiet(opts))
  if not ok then
    if not self.attached then pcall(self.close, self) end
    error(err, 0)
  end
  return self
end

function M:__tostring()
  return "trainer(" .. self.name .. ", " .. self.base_model .. ")"
end

function M:get()
  local r = self.fw:request{path = "/v1/accounts/" .. self.fw.account_id .. "/rlorTrainerJobs/" ..
    self.job_id,
    accept = {404}, what = "get trainer job " .. self.name}
  if r.status == 404 then return nil end
  return r.body
end

function M:_wait_running(timeout, interval, quiet)
  local p = progress.new("trainer " .. self.job_id, {quiet = quiet})
  while true do
    local job = self:get()
    if not job then
      p:finish("gone")
      raise("not_found", "trainer job " .. self.name .. " disappeared while starting",
        {status = 404})
    end
    local state = job.state or "JOB_STATE_UNKNOWN"
    p:update(state)
    if terminal[state] then
      p:finish(state)
      local why = job.status and job.status.message or ""
      raise("trainer_failed", "trainer job " .. self.name .. " is " ..
        state .. (why ~= "" and (": " .. why) or "") ..
        "; create a new one")
    end
    if state == "JOB_STATE_RUNNING" then
      local r = self.fw:request{plane = "trainer", path = self.gateway .. "healthz", retries = 1,
        accept = {404, 425, 500, 502, 503, 504}, what = "trainer " .. self.job_id .. " healthz"}
      if r.status == 200 then
        p:finish("healthy")
        return
      end
    end
    if p:elapsed() + interval > timeout then
      p:finish("timed out")
      raise("timeout", string.format("trainer job %s not healthy after %.0f s (state %s)",
        self.name, p:elapsed(),
        state), {retryable = true})
    end
    flare.sleep(interval)
  end
end

function M:_submit(op, body, transform)
  local f = self.fw:submit{method = "POST", plane = "trainer", path = self.gateway .. op,
    body = body,
    timeout_s = 3600, what = op .. " on trainer " .. self.job_id}
  return future.new(f, function(r) local b = r.body; return transform and transform(b) or b end)
end

local function as_datum(d, i)
  if type(d) ~= "table" then raise("invalid_argument", "datums[" .. i .. "] must be a table") end
  if d.model_input then return d end
  if type(d.tokens) ~= "table" or type(d.target_tokens) ~= "table" then
    raise("invalid_argument",
      "datums[" .. i .. "] needs model_input/loss_fn_inputs or tokens and target_tokens")
  end
  local inputs = {target_tokens = d.target_tokens}
  for _, k in ipairs({"weights", "logprobs", "advantages", "ref_logprobs"}) do inputs[k] = d[k] end
  return {model_input = {chunks = {{type = "encoded_text", tokens = d.tokens}}},
    loss_fn_inputs = inputs}
end

local function fb_body(key, datums, loss_fn, config)
  if type(datums) ~= "table" then raise("invalid_argument",
    "forward_backward: datums must be a list") end
  local data = {}
  for i, d in ipairs(datums) do data[i] = as_datum(d, i) end
  local input = {data = data, loss_fn = loss_fn or "cross_entropy"}
  if config then input.loss_fn_config = config end
  return {[key] = input}
end

function M:forward_backward_async(datums, loss_fn, config)
  return self:_submit("forward_backward", fb_body("forward_backward_input", datums,
    loss_fn, config))
end

function M:forward_async(datums, loss_fn, config)
  return self:_submit("forward", fb_body("forward_input", datums, loss_fn, config))
end

-- Tinker's forward_backward_custom: logprobs from a forward pass, then loss_fn(datums,
-- logprobs) -> loss, grads[, metrics] in the client, then a cross_entropy pass whose weights
-- are -grads, which puts ∂loss/∂logprobs into the trainer's gradient.
local function check_grads(grads, logprobs)
  if type(grads) ~= "table" or #grads ~= #logprobs then
    raise("invalid_argument", "forward_backward_custom: the loss function must return one " ..
      "list of gradients per datum (" .. #logprobs .. "), got " ..
      (type(grads) == "table" and #grads or type(grads)))
  end
  for i, g in ipairs(grads) do
    local n = #logprobs[i]
    if type(g) ~= "table" or #g ~= n then
      raise("invalid_argument", string.format("forward_backward_custom: grads[%d] must " ..
        "hold %d numbers (one per target token), got %s", i, n,
        type(g) == "table" and #g or type(g)))
    end
    for t = 1, n do
      local v = g[t]
      if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then
        raise("invalid_argument", string.format(
          "forward_backward_custom: grads[%d][%d] is not a finite number (%s)", i, t,
          tostring(v)))
      end
    end
  end
end

-- datums in the protocol's form, the forward pass's outputs, and loss_fn's answer on them.
local function custom_pass(self, datums, loss_fn, who)
  if type(loss_fn) ~= "function" then
    raise("invalid_argument", who .. ": loss_fn must be a function " ..
      "(datums, logprobs) -> loss, grads[, metrics] (flare.losses.new gives the built-in ones)")
  end
  if type(datums) ~= "table" then raise("invalid_argument", who .. ": datums must be a list") end
  local data, scoring = {}, {}
  for i, d in ipairs(datums) do
    data[i] = as_datum(d, i)
    scoring[i] = {model_input = data[i].model_input,
      loss_fn_inputs = {target_tokens = data[i].loss_fn_inputs.target_tokens}}
  end
  local fwd = self:forward(scoring, "cross_entropy")
  local logprobs = {}
  for i, o in ipairs(fwd.loss_fn_outputs) do
    logprobs[i] = type(o.logprobs) == "table" and o.logprobs.data or o.logprobs
  end
  local loss, grads, metrics = loss_fn(data, logprobs)
  if type(loss) ~= "number" then
    raise("invalid_argument", who .. ": the loss function must return the loss as a " ..
      "number, got " .. type(loss))
  end
  local m = {}
  for k, v in pairs(metrics or {}) do m[k] = v end
  m.loss, m.tokens = loss, fwd.metrics and fwd.metrics.tokens
  return data, {loss_fn_outputs = fwd.loss_fn_outputs, metrics = m}, logprobs, grads
end

function M:forward_backward_custom(datums, loss_fn)
  local data, out, logprobs, grads = custom_pass(self, datums, loss_fn,
    "forward_backward_custom")
  check_grads(grads, logprobs)
  local linear = {}
  for i, d in ipairs(data) do
    local w = {}
    for t, g in ipairs(grads[i]) do w[t] = -g end
    linear[i] = {model_input = d.model_input,
      loss_fn_inputs = {target_tokens = d.loss_fn_inputs.target_tokens, weights = w}}
  end
  self:forward_backward(linear, "cross_entropy")
  return out
end

function M:forward_custom(datums, loss_fn)
  local _, out = custom_pass(self, datums, loss_fn, "forward_custom")
  return out
end

local adam_spec = {learning_rate = "number", beta1 = "number", beta2 = "number", eps = "number",
  weight_decay = "number", grad_clip_norm = "number"}

function M:optim_step_async(opts)
  opts = options.check(opts, adam_spec, "optim_step")
  local p = {learning_rate = opts.learning_rate or self.learning_rate, beta1 = opts.beta1 or 0.9,
    beta2 = opts.beta2 or 0.95, eps = opts.eps or 1e-12, weight_decay = opts.weight_decay or 0,
    grad_clip_norm = opts.grad_clip_norm or 0}
  return self:_submit("optim_step", {adam_params = p})
end

function M:save_weights_for_sampler_async(name, opts)
  if type(name) ~= "string" or name == "" then
    raise("invalid_argument", "save_weights_for_sampler: name must be a non-empty string")
  end
  opts = options.check(opts, {checkpoint_type = "string"}, "save_weights_for_sampler")
  local kind = opts.checkpoint_type or "base"
  if kind ~= "base" and kind ~= "delta" and kind ~= "merged_base" then
    raise("invalid_argument",
      "save_weights_for_sampler: checkpoint_type must be \"base\", \"delta\" or " ..
      "\"merged_base\", got " .. kind)
  end
  return self:_submit("save_weights_for_sampler", {path = name, checkpoint_type = kind})
end

function M:save_state_async(name)
  if type(name) ~= "string" or name == "" then raise("invalid_argument",
    "save_state: name must be a non-empty string") end
  return self:_submit("save_state", {path = name})
end

function M:load_state_async(name)
  if type(name) ~= "string" or name == "" then raise("invalid_argument",
    "load_state: name must be a non-empty string") end
  return self:_submit("load_state", {path = name})
end

for _, op in ipairs({"forward_backward", "forward", "optim_step", "save_weights_for_sampler",
  "save_state",
  "load_state"}) do
  local async = M[op .. "_async"]
  M[op] = function(self, ...) return async(self, ...):wait() end
end

function M:list_checkpoints()
  local ok, r = pcall(self.fw.request, self.fw, {plane = "trainer",
    path = self.gateway .. "list_checkpoints",
    what = "list checkpoints of trainer " .. self.job_id})
  if ok then return type(r.body) == "table" and r.body.checkpoints or {} end
  if type(r) == "table" and r.code == "interrupted" then error(r, 0) end
  if not self.fw.quiet then
    io.stderr:write("trainer: warning: list_checkpoints failed (a resume may start from " ..
      "scratch): " .. tostring(type(r) == "table" and r.message or r) .. "\n")
  end
  return {}
end

function M:resolve_checkpoint_path(name, source_job_id)
  if type(name) ~= "string" or name == "" then
    raise("invalid_argument",
      "resolve_checkpoint_path: checkpoint_name must be a non-empty string")
  end
  if name:sub(1, 5) == "gs://" or name:sub(1, 1) == "/" then return name end
  if source_job_id == nil then return name end
  if type(source_job_id) ~= "string" then
    raise("invalid_argument", "resolve_checkpoint_path: source_job_id must be a string")
  end
  local job = source_job_id:match("^%s*(.-)%s*$"):match("([^/]+)$")
  if not job or job == "" then
    raise("invalid_argument", "resolve_checkpoint_path: source_job_id cannot be empty")
  end
  return "cross_job://" .. job .. "/" .. name:match("^%s*(.-)%s*$")
end

function M:close()
  if self.closed then return end
  self.fw:request{method = "DELETE", path = "/v1/accounts/" .. self.fw.account_id ..
    "/rlorTrainerJobs/" .. self.job_id,
    accept = {404}, what = "delete trainer job " .. self.name}
  self.closed = true
end

return M
