-- flare.grpo: the arithmetic of a GRPO step, free of any remote call.
--
--   grpo.advantages(rewards, {normalize_std = false, eps = 1e-6}) -> list
--   grpo.is_degenerate(rewards)          -> true when every reward of the group is equal
--   grpo.datum(completion, advantage)    -> a Tinker-shaped datum for the trainer
--   grpo.build_datums(groups, rewards, opts) -> datums, info
--       groups[g] is a list of sampler completions ({tokens, logprobs, prompt_tokens, ...}),
--       rewards[g][i] the reward of completion i of group g. Groups whose rewards are all
--       equal carry no signal and are dropped. info = {groups =, kept_groups =,
--       dropped_groups =, datums =, tokens =}.
--   grpo.pass_at_k(n, c, k)              -> unbiased 1 - C(n-c, k) / C(n, k)
--   grpo.logprob_mismatch(datums, outputs) -> {mismatch =, abs_diff =, tokens =}
--   grpo.metrics{groups =, rewards =, k =, threshold =, datums =, outputs =, sync_s =}
--   grpo.losses                          -> the policy losses a GRPO step can train with
--   grpo.loss_setup(loss, opts)          -> loss_fn_config, advantage options (see below)
--   grpo.attach_ref_logprobs(datums, outputs) -> datums carrying a reference model's logprobs
--       (outputs = loss_fn_outputs of reference:forward(datums)), for the KL penalty and `kl`
--   grpo.kl_into_advantages(datums, beta) -> datums, mean k1: the KL penalty as a reward term
--       (for a trainer without kl_beta): A_t - beta * (sampler_logp_t - ref_logp_t) on each
--       completion token, which needs ref_logprobs attached first
local M = {}

local function mean(xs)
  if #xs == 0 then return 0 end
  local s = 0
  for _, x in ipairs(xs) do s = s + x end
  return s / #xs
end

local function std(xs, m)
  if #xs < 2 then return 0 end
  m = m or mean(xs)
  local s = 0
  for _, x in ipairs(xs) do s = s + (x - m) ^ 2 end
  return math.sqrt(s / #xs)
end
M.mean, M.std = mean, std

local function check_rewards(rewards, where)
  if type(rewards) ~= "table" then error(where .. ": rewards must be a list of numbers", 3) end
  for i, r in ipairs(rewards) do
    if type(r) ~= "number" or r ~= r then
      error(where .. ": reward " .. i .. " is not a number (" .. tostring(r) .. ")", 3)
    end
  end
end

-- Reward minus the group mean; divided by the group std when normalize_std is set.
function M.advantages(rewards, opts)
  check_rewards(rewards, "grpo.advantages")
  opts = opts or {}
  local m = mean(rewards)
  local d = 1
  if opts.normalize_std then d = std(rewards, m) + (opts.eps or 1e-6) end
  local out = {}
  for i, r in ipairs(rewards) do out[i] = (r - m) / d end
  return out
end

function M.is_degenerate(rewards)
  for i = 2, #rewards do
    if rewards[i] ~= rewards[1] then return false end
  end
  return true
end

local function completion_of(c)
  if type(c) ~= "table" then error("grpo: a completion must be a table", 3) end
  if type(c.tokens) ~= "table" then
    error("grpo: completion.tokens (a list of token ids) is required", 3) end
  if type(c.prompt_tokens) ~= "table" then
    error("grpo: completion.prompt_tokens (a list of token ids) is required", 3)
  end
  return c
end

-- model_input = prompt + completion without its last token; target_tokens = the same
-- shifted by one. Positions that predict prompt tokens get weight, logprob and
-- advantage 0; completion positions carry the sampler logprob and the advantage.
function M.datum(completion, advantage, opts)
  local c = completion_of(completion)
  opts = opts or {}
  local lps = opts.use_sampling_logprobs and c.sampling_logprobs or c.logprobs or
    c.sampling_logprobs
  if type(lps) ~= "table" or #lps < #c.tokens then
    error("grpo: completion.logprobs must hold one logprob per completion token (" .. #c.tokens ..
      " tokens, " .. (type(lps) == "table" and #lps or 0) .. " logprobs)", 2)
  end
  local full = {}
  for _, t in ipairs(c.prompt_tokens) do full[#full + 1] = t end
  local p = #full
  for _, t in ipairs(c.tokens) do full[#full + 1] = t end
  local input, target, logprobs, advantages, weights = {}, {}, {}, {}, {}
  for j = 1, #full - 1 do
    input[j] = full[j]
    target[j] = full[j + 1]
    local k = j + 1 - p  -- index in the completion of the predicted token
    if k >= 1 then
      logprobs[j], advantages[j], weights[j] = lps[k], advantage, 1
    else
      logprobs[j], advantages[j], weights[j] = 0, 0, 0
    end
  end
  return {
    model_input = {chunks = {{type = "encoded_text", tokens = input}}},
    loss_fn_inputs = {target_tokens = target, logprobs = logprobs, advantages = advantages,
      weights = weights},
  }
end

local function completions_of(group)
  return group.completions or group
end
M.completions_of = completions_of

function M.build_datums(groups, rewards, opts)
  opts = opts or {}
  local datums = {}
  local info = {groups = #groups, kept_groups = 0, dropped_groups = 0, datums = 0, tokens = 0}
  for g, group in ipairs(groups) do
    local cs = completions_of(group)
    local rs = rewards[g]
    if type(rs) ~= "table" or #rs ~= #cs then
      error("grpo.build_datums: rewards[" .. g .. "] must hold " .. #cs .. " numbers", 2)
    end
    if #cs < 2 or M.is_degenerate(rs) then
      info.dropped_groups = info.dropped_groups + 1
    else
      info.kept_groups = info.kept_groups + 1
      local adv = M.advantages(rs, opts)
      for i, c in ipairs(cs) do
        if not (opts.skip_zero_advantage and adv[i] == 0) and #c.tokens > 0 then
          datums[#datums + 1] = M.datum(c, adv[i], opts)
          info.tokens = info.tokens + #c.tokens
        end
      end
    end
  end
  info.datums = #datums
  return datums, info
end

-- Unbiased pass@k from n samples of which c are correct (Chen et al. 2021).
function M.pass_at_k(n, c, k)
  if k > n then error("grpo.pass_at_k: k (" .. k .. ") must not exceed n (" .. n .. ")", 2) end
  if n - c < k then return 1 end
  local p = 1
  for i = n - c + 1, n do p = p * (1 - k / i) end
  return 1 - p
end

-- Sampler vs trainer logprobs on completion positions: mismatch is the mean of
-- (sampler - trainer), an estimate of KL(sampler || trainer) on sampler tokens. It is not
-- the `kl` metric, which is the policy's KL to a reference model.
function M.logprob_mismatch(datums, outputs)
  local n, diff, absd = 0, 0, 0
  for i, d in ipairs(datums) do
    local out = outputs and outputs[i]
    local tl = out and out.logprobs
    if tl then
      local w, sl = d.loss_fn_inputs.weights, d.loss_fn_inputs.logprobs
      for j = 1, math.min(#tl, #sl) do
        if w[j] ~= 0 then
          local x = sl[j] - tl[j]
          diff, absd, n = diff + x, absd + math.abs(x), n + 1
        end
      end
    end
  end
  if n == 0 then return {mismatch = 0, abs_diff = 0, tokens = 0} end
  return {mismatch = diff / n, abs_diff = absd / n, tokens = n}
end

-- Step metrics. threshold: reward counted as correct for pass@k (default 1).
function M.metrics(o)
  local all, passes = {}, {}
  local k = o.k or 1
  local threshold = o.threshold or 1
  local truncated, total, tokens = 0, 0, 0
  for g, group in ipairs(o.groups or {}) do
    local cs = completions_of(group)
    local rs = o.rewards[g]
    local c = 0
    for i, comp in ipairs(cs) do
      all[#all + 1] = rs[i]
      if rs[i] >= threshold then c = c + 1 end
      total = total + 1
      if comp.finish_reason == "length" then truncated = truncated + 1 end
      tokens = tokens + #(comp.tokens or {})
    end
    if #cs >= k then passes[#passes + 1] = M.pass_at_k(#cs, c, k) end
  end
  local m = mean(all)
  local r = {
    reward_mean = m,
    reward_std = std(all, m),
    ["pass@" .. k] = mean(passes),
    truncation_rate = total > 0 and truncated / total or 0,
    completions = total,
    completion_tokens = tokens,
  }
  if o.datums and o.outputs then
    local mm = M.logprob_mismatch(o.datums, o.outputs)
    r.logprob_mismatch = mm.mismatch
    r.logprob_abs_diff = mm.abs_diff
  end
  if o.sync_s then r.sync_s = o.sync_s end
  return r
end

-- The trainer's policy losses (docs/losses.md) and, per loss, the advantage's std
-- normalisation its paper uses: GRPO divides by the group's std, Dr. GRPO does not.
M.losses = {"importance_sampling", "ppo", "grpo", "dr_grpo", "gspo", "cispo", "reinforce"}
local std_normalised = {grpo = true, gspo = true}
local clipped = {ppo = true, grpo = true, dr_grpo = true, gspo = true, cispo = true}

-- loss_fn_config for `loss` from opts {clip_low = 0.2, clip_high = 0.2 (DAPO raises it),
-- kl_beta = 0, kl_estimator = "k3", tis_cap = 0, max_tokens = (dr_grpo's constant token
-- budget per sequence), sequences = (sequences per batch)}, and the advantage options
-- {normalize_std = } that go with it. nil config when the loss needs none.
function M.loss_setup(loss, opts)
  opts = opts or {}
  local known = false
  for _, l in ipairs(M.losses) do known = known or l == loss end
  if not known then
    error("grpo.loss_setup: loss '" .. tostring(loss) .. "' is not one of " ..
      table.concat(M.losses, ", "), 2)
  end
  local cfg = {}
  if clipped[loss] then  -- Tinker's names: bounds on the ratio
    cfg.clip_low_threshold = 1 - (opts.clip_low or 0.2)
    cfg.clip_high_threshold = 1 + (opts.clip_high or opts.clip_low or 0.2)
  end
  if loss == "dr_grpo" and opts.max_tokens then
    cfg.normalization, cfg.normalization_tokens = "constant",
      opts.max_tokens * (opts.sequences or 1)
  end
  if (opts.kl_beta or 0) > 0 then
    cfg.kl_beta, cfg.kl_estimator = opts.kl_beta, opts.kl_estimator or "k3"
  end
  if (opts.tis_cap or 0) > 0 then cfg.tis_cap = opts.tis_cap end
  return next(cfg) and cfg or nil, {normalize_std = std_normalised[loss] or false}
end

function M.attach_ref_logprobs(datums, outputs)
  for i, d in ipairs(datums) do
    local lp = outputs[i] and outputs[i].logprobs
    if type(lp) ~= "table" then
      error("grpo.attach_ref_logprobs: outputs[" .. i .. "].logprobs is missing", 2)
    end
    d.loss_fn_inputs.ref_logprobs = lp
  end
  return datums
end

function M.kl_into_advantages(datums, beta)
  local sum, n = 0, 0
  for i, d in ipairs(datums) do
    local inp = d.loss_fn_inputs
    if type(inp.ref_logprobs) ~= "table" then
      error("grpo.kl_into_advantages: datums[" .. i .. "] has no ref_logprobs " ..
        "(grpo.attach_ref_logprobs first)", 2)
    end
    for t, w in ipairs(inp.weights) do
      if w ~= 0 then
        local k1 = inp.logprobs[t] - inp.ref_logprobs[t]
        inp.advantages[t] = inp.advantages[t] - beta * k1
        sum, n = sum + k1, n + 1
      end
    end
  end
  return datums, n > 0 and sum / n or 0
end

-- The options of advantages, datum and build_datums (build_datums passes its own on).
local grpo_options = {normalize_std = "boolean", eps = "number", use_sampling_logprobs = "boolean",
  skip_zero_advantage = "boolean"}

-- Arguments are checked before each call (a misuse raises invalid_argument naming the field).
return require("flare.args").checked(M, "flare.grpo", {
  mean = {"xs:table"},
  std = {"xs:table", "m:nil|number"},
  advantages = {"rewards:table", {"opts", grpo_options}},
  is_degenerate = {"rewards:table"},
  datum = {"completion:table", "advantage:number", {"opts", grpo_options}},
  completions_of = {"group:table"},
  build_datums = {"groups:table", "rewards:table", {"opts", grpo_options}},
  pass_at_k = {"n:integer", "c:integer", "k:integer"},
  logprob_mismatch = {"datums:table", "outputs:table"},
  loss_setup = {"loss:string", {"opts", {clip_low = "number", clip_high = "number",
    kl_beta = "number", kl_estimator = "string", tis_cap = "number", max_tokens = "integer",
    sequences = "integer"}}},
  attach_ref_logprobs = {"datums:table", "outputs:table"},
  kl_into_advantages = {"datums:table", "beta:number"},
  metrics = {{"opts", {groups = "table", rewards = "table", k = "integer", threshold = "number",
    datums = "table",
    outputs = "table", sync_s = "number"}}},
})
