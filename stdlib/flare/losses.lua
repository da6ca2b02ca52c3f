-- flare.losses: the trainer's built-in losses computed in the client, for
-- trainer:forward_backward_custom. A trainer service that lacks one of them (Tinker's, for
-- one, has no dr_grpo, gspo, reinforce or dpo) still trains with it: the client takes the
-- logprobs from a forward pass, computes the loss and its derivative in each logprob
-- here, and sends that derivative back as the weights of a cross_entropy pass.
--
--   local loss = flare.losses.new(loss_fn, config)
--       loss_fn and config (loss_fn_config) as trainer:forward_backward takes them: see
--       docs/losses.md. Returns a function (datums, logprobs) -> loss, grads, metrics, with
--       datums in the protocol's form, logprobs[i][t] the trainer's logprob of datum i's
--       target t, and grads[i][t] = ∂loss/∂logprobs[i][t]. metrics are the ones the trainer
--       reports for that loss (loss, mean_ratio, clip_fraction, logprob_mismatch, kl, ...).
--   flare.losses.names  -> the loss_fn names new takes
--
-- The definitions are the trainer's (emulator/model/losses.hpp), term for term, so the same
-- datums give the same loss and gradient either way (the client spec checks each loss).
local M = {}

M.names = {"cross_entropy", "importance_sampling", "ppo", "grpo", "dr_grpo", "gspo", "cispo",
  "reinforce", "dpo"}
local known = {}
for _, n in ipairs(M.names) do known[n] = true end

local exp, min, max, log = math.exp, math.min, math.max, math.log

local function fail(field, what)
  error({code = "invalid_argument", message = "loss_fn_config." .. field .. ": " .. what}, 0)
end

-- loss_fn_config as the trainer reads it (the same names, aliases and checks).
local function read_config(fn, cfg)
  local c = {clip_low = 0.2, clip_high = 0.2, normalization = "default", normalization_tokens = 0,
    tis_cap = 0, kl_beta = 0, kl_estimator = "k3", dpo_beta = 0.1}
  local set = {
    clip_epsilon = function(x) c.clip_low, c.clip_high = x, x end,
    eps_clip = function(x) c.clip_low, c.clip_high = x, x end,
    clip_low = function(x) c.clip_low = x end, eps_clip_low = function(x) c.clip_low = x end,
    clip_high = function(x) c.clip_high = x end, eps_clip_high = function(x) c.clip_high = x end,
    clip_low_threshold = function(x) c.clip_low = 1 - x end,
    clip_high_threshold = function(x) c.clip_high = x - 1 end,
    normalization_tokens = function(x) c.normalization_tokens = x end,
    tis_cap = function(x) c.tis_cap = x end, kl_beta = function(x) c.kl_beta = x end,
    dpo_beta = function(x) c.dpo_beta = x end,
  }
  local choices = {normalization = {default = 1, sum = 1, token = 1, sequence = 1, constant = 1},
    kl_estimator = {k1 = 1, k2 = 1, k3 = 1}}
  for k, v in pairs(cfg or {}) do
    if choices[k] then
      if not choices[k][v] then fail(k, "unknown value '" .. tostring(v) .. "'") end
      c[k] = v
    else
      if v ~= v or v == math.huge or v == -math.huge then fail(k, "must be a finite number") end
      set[k](v)
    end
  end
  if c.clip_low < 0 or c.clip_low >= 1 or c.clip_high < 0 then
    fail("clip_low", "the clip range is empty or inverted")
  end
  if c.normalization == "constant" and c.normalization_tokens <= 0 then
    fail("normalization_tokens", "must be > 0 with normalization 'constant'")
  end
  if c.normalization ~= "constant" and c.normalization_tokens ~= 0 then
    fail("normalization_tokens", "only applies to normalization 'constant'")
  end
  local tis_losses = {importance_sampling = 1, ppo = 1, grpo = 1, dr_grpo = 1, reinforce = 1}
  if c.tis_cap < 0 then fail("tis_cap", "must be >= 0 (0 = off)") end
  if c.tis_cap > 0 and not tis_losses[fn] then fail("tis_cap", "does not apply to " .. fn) end
  if c.kl_beta < 0 then fail("kl_beta", "must be >= 0") end
  if c.kl_beta > 0 and fn == "dpo" then fail("kl_beta", "does not apply to dpo") end
  if c.dpo_beta <= 0 then fail("dpo_beta", "must be > 0") end
  if c.normalization == "default" then c.normalization = fn == "grpo" and "sequence" or "sum" end
  return c
end

-- A loss_fn_inputs field as a plain list (the protocol's TensorData carries it in .data).
local function list(x)
  if type(x) == "table" and x.data then return x.data end
  return x
end

local function is_loss_token(w, t) return not w or w[t] ~= 0 end

local function loss_tokens(w, n)
  local k = 0
  for t = 1, n do if is_loss_token(w, t) then k = k + 1 end end
  return k
end

-- One token of a per-token loss: loss, ∂loss/∂logp, clipped.
local function token_loss(fn, c, logp, weight, q, adv)
  if fn == "cross_entropy" then return -weight * logp, -weight, false end
  if fn == "reinforce" then return -adv * logp, -adv, false end
  local lo, hi = 1 - c.clip_low, 1 + c.clip_high
  local r = exp(logp - q)
  if fn == "cispo" then  -- -sg(clip(r))·A·logp
    local w = min(max(r, lo), hi)
    return -w * adv * logp, -w * adv, w ~= r
  end
  if fn == "importance_sampling" then return -r * adv, -r * adv, false end
  local unclipped, clipped = r * adv, min(max(r, lo), hi) * adv
  if unclipped <= clipped then return -unclipped, -unclipped, r < lo or r > hi end
  return -clipped, 0, r < lo or r > hi
end

local function kl_term(est, delta)
  if est == "k1" then return delta, 1 end
  if est == "k2" then return delta * delta / 2, delta end
  local e = exp(-delta)
  return e - 1 + delta, 1 - e
end

-- Each datum's factor from the normalisation (the trainer's datum_scales).
local function scales(fn, c, n_of, w_of, count)
  local s = {}
  for i = 1, count do s[i] = 1 end
  if c.normalization == "sum" then return s end
  if c.normalization == "constant" then
    for i = 1, count do s[i] = 1 / c.normalization_tokens end
    return s
  end
  local per_sequence = fn == "gspo" or fn == "dpo"
  if c.normalization == "token" then
    local total = 0
    for i = 1, count do total = total + loss_tokens(w_of(i), n_of(i)) end
    for i = 1, count do s[i] = total > 0 and 1 / total or 0 end
    return s
  end
  local units = fn == "dpo" and math.floor(count / 2) or count
  for i = 1, count do
    local n = per_sequence and 1 or loss_tokens(w_of(i), n_of(i))
    s[i] = (n > 0 and units > 0) and 1 / (units * n) or 0
  end
  return s
end

local function new_stats()
  return {loss = 0, ratio_sum = 0, mismatch_sum = 0, metric_tokens = 0, clipped = 0,
    tis_capped = 0, kl_sum = 0, kl_tokens = 0, pairs = 0, pairs_right = 0, margin_sum = 0}
end

-- gspo: one ratio per sequence, s = exp(mean_t(logp - q)), term -min(s·A, clip(s)·A).
local function gspo_sequence(c, inp, lp, scale, g, st)
  local w, q, a = inp.weights, inp.logprobs, inp.advantages
  local sum, adv, n = 0, 0, 0
  for t = 1, #lp do
    if is_loss_token(w, t) then sum, adv, n = sum + lp[t] - q[t], adv + a[t], n + 1 end
  end
  if n == 0 then return end
  adv = adv / n
  local s = exp(sum / n)
  local lo, hi = 1 - c.clip_low, 1 + c.clip_high
  local unclipped, clipped = s * adv, min(max(s, lo), hi) * adv
  local grad = unclipped <= clipped
  st.loss = st.loss + scale * -(grad and unclipped or clipped)
  for t = 1, #lp do
    if is_loss_token(w, t) then
      if grad then g[t] = g[t] + scale * -adv * s / n end
      if (s < lo or s > hi) and a[t] ~= 0 then st.clipped = st.clipped + 1 end
    end
  end
end

local function datum_loss(fn, c, inp, lp, scale, g, st)
  local w, q, a, ref = inp.weights, inp.logprobs, inp.advantages, inp.ref_logprobs
  if fn == "gspo" then gspo_sequence(c, inp, lp, scale, g, st) end
  for t = 1, #lp do
    local adv, qt = a and a[t] or 0, q and q[t] or 0
    local metric = q and (not a or adv ~= 0)
    if metric then
      local log_r = lp[t] - qt
      st.ratio_sum = st.ratio_sum + exp(log_r)
      st.mismatch_sum = st.mismatch_sum + exp(log_r) - 1 - log_r
      st.metric_tokens = st.metric_tokens + 1
    end
    if fn ~= "gspo" and (fn == "cross_entropy" or is_loss_token(w, t)) then
      local f, q_eff = 1, qt
      if c.tis_cap > 0 then
        local is = exp(lp[t] - qt)
        f, q_eff = min(is, c.tis_cap), lp[t]
        if metric and is > c.tis_cap then st.tis_capped = st.tis_capped + 1 end
      end
      local l, d, clipped = token_loss(fn, c, lp[t], w and w[t] or 1, q_eff, adv)
      st.loss = st.loss + scale * f * l
      g[t] = g[t] + scale * f * d
      if metric and clipped then st.clipped = st.clipped + 1 end
    end
    if ref and is_loss_token(w, t) then
      local k, dk = kl_term(c.kl_estimator, lp[t] - ref[t])
      st.kl_sum, st.kl_tokens = st.kl_sum + k, st.kl_tokens + 1
      if c.kl_beta > 0 then
        st.loss = st.loss + scale * c.kl_beta * k
        g[t] = g[t] + scale * c.kl_beta * dk
      end
    end
  end
end

-- dpo: z = β·(Δ_chosen - Δ_rejected), Δ = Σ_t (logp - ref_logp); loss -log σ(z).
local function dpo_pair(c, ic, ir, lc, lr, scale, gc, gr, st)
  local function delta(inp, lp)
    local s = 0
    for t = 1, #lp do
      if is_loss_token(inp.weights, t) then s = s + lp[t] - inp.ref_logprobs[t] end
    end
    return s
  end
  local z = c.dpo_beta * (delta(ic, lc) - delta(ir, lr))
  local loss = z > 0 and log(1 + exp(-z)) or -z + log(1 + exp(z))
  local dz = -1 / (1 + exp(z))
  st.loss = st.loss + scale * loss
  st.pairs, st.margin_sum = st.pairs + 1, st.margin_sum + z
  if z > 0 then st.pairs_right = st.pairs_right + 1 end
  for t = 1, #lc do gc[t] = is_loss_token(ic.weights, t) and scale * c.dpo_beta * dz or 0 end
  for t = 1, #lr do gr[t] = is_loss_token(ir.weights, t) and -scale * c.dpo_beta * dz or 0 end
end

local function inputs_of(d, i, fn, c, n)
  local f = d.loss_fn_inputs or {}
  local inp = {weights = list(f.weights), logprobs = list(f.logprobs),
    advantages = list(f.advantages), ref_logprobs = list(f.ref_logprobs)}
  local function need(field, why)
    if type(inp[field]) ~= "table" or #inp[field] ~= n then
      error({code = "invalid_argument", message = string.format(
        "datums[%d].loss_fn_inputs.%s: %s needs %d values (one per target token)", i,
        field, why, n)}, 0)
    end
  end
  if fn ~= "cross_entropy" and fn ~= "dpo" then need("advantages", fn) end
  if (fn ~= "cross_entropy" and fn ~= "dpo" and fn ~= "reinforce") then need("logprobs", fn) end
  if c.tis_cap > 0 then need("logprobs", "tis_cap") end
  if fn == "dpo" then need("ref_logprobs", "dpo") end
  if c.kl_beta > 0 then need("ref_logprobs", "kl_beta > 0") end
  for _, field in ipairs({"weights", "logprobs", "advantages", "ref_logprobs"}) do
    if inp[field] and #inp[field] == 0 then inp[field] = nil end
  end
  return inp
end

function M.new(fn, cfg)
  if not known[fn] then
    error({code = "invalid_argument", message = "flare.losses.new: unknown loss_fn '" ..
      tostring(fn) .. "' (" .. table.concat(M.names, ", ") .. ")"}, 0)
  end
  local c = read_config(fn, cfg)
  return function(datums, logprobs)
    local count = #datums
    if fn == "dpo" and count % 2 ~= 0 then
      error({code = "invalid_argument", message = "dpo takes (chosen, rejected) pairs, got " ..
        count .. " datums"}, 0)
    end
    local inp, grads = {}, {}
    for i = 1, count do
      inp[i] = inputs_of(datums[i], i, fn, c, #logprobs[i])
      grads[i] = {}
      for t = 1, #logprobs[i] do grads[i][t] = 0 end
    end
    local s = scales(fn, c, function(i) return #logprobs[i] end,
      function(i) return inp[i].weights end, count)
    local st = new_stats()
    if fn == "dpo" then
      for i = 1, count - 1, 2 do
        dpo_pair(c, inp[i], inp[i + 1], logprobs[i], logprobs[i + 1], s[i], grads[i],
          grads[i + 1], st)
      end
    else
      for i = 1, count do datum_loss(fn, c, inp[i], logprobs[i], s[i], grads[i], st) end
    end
    local n = st.metric_tokens
    local metrics = {loss = st.loss, mean_ratio = n > 0 and st.ratio_sum / n or 1,
      clip_fraction = n > 0 and st.clipped / n or 0,
      logprob_mismatch = n > 0 and st.mismatch_sum / n or 0}
    if st.kl_tokens > 0 then metrics.kl = st.kl_sum / st.kl_tokens end
    if c.tis_cap > 0 then metrics.tis_fraction = n > 0 and st.tis_capped / n or 0 end
    if fn == "dpo" then
      metrics.preference_accuracy = st.pairs > 0 and st.pairs_right / st.pairs or 0
      metrics.reward_margin = st.pairs > 0 and st.margin_sum / st.pairs or 0
    end
    return st.loss, grads, metrics
  end
end

local config_spec = {normalization = "string", kl_estimator = "string"}
for _, k in ipairs({"clip_epsilon", "eps_clip", "clip_low", "eps_clip_low", "clip_high",
  "eps_clip_high", "clip_low_threshold", "clip_high_threshold", "normalization_tokens", "tis_cap",
  "kl_beta", "dpo_beta"}) do config_spec[k] = "number" end

return require("flare.args").checked(M, "flare.losses", {
  new = {"loss_fn:string", {"config", config_spec}},
})
