-- flare.loops: the training loops recipes share, on a trainer client.
--
--   loops.sft_step(trainer, samples, learning_rate) -> {loss =, grad_norm =}
--       one cross_entropy step on in-memory samples ({prompt_tokens, tokens}, as
--       flare.distill.text_sample or rejection_sample give them); loss is per completion token
--   loops.eval_loss(trainer, samples) -> the cross_entropy loss per completion token, by a
--       forward pass (no step)
--   loops.sft{trainer =, batch = function(step) -> samples[, row], steps =, learning_rate =,
--     log = nil, eval = nil, start_step = 1, after_step = nil}
--       sft_step for steps start_step..steps; logs {step, loss, grad_norm} plus the fields of
--       the row batch returns; with eval (held-out samples) also eval_loss, by a forward pass,
--       before the first step (step 0) and after the last; after_step(row) runs before the log
--   loops.grpo{trainer =, syncer =, sampler =, task =, problems = function(step) -> problems,
--     steps =, group_size = 8, max_tokens =, temperature = 1.0, learning_rate =,
--     loss = "importance_sampling", loss_opts = nil, normalize_std = nil, ref = nil,
--     grad_clip_norm = nil, seed = 0, async = false, max_steps_off_policy = 1, start_step = 1,
--     each_step = nil, hotload = nil, client_loss = false, log = function(row, info)}
--       sample -> verifier reward -> flare.grpo datums -> forward_backward -> optim_step ->
--       hotload; logs row = {step, reward, pass@1, groups_kept, loss, grad_norm}, with info =
--       {metrics = flare.grpo.metrics(...), out = forward_backward's result}; returns the
--       reward curve. loss_opts go to flare.grpo.loss_setup; ref: a reference trainer whose
--       logprobs the datums carry (KL); async: step k+1 is sampled while step k trains, if at
--       most max_steps_off_policy stale; hotload(step, trained) replaces the default (a
--       save_and_hotload "grpo-<step>" after each step that trained); each_step: the steps
--       (e.g. run:steps()) instead of start_step..steps; client_loss: the loss is computed in
--       the client (flare.losses, trainer:forward_backward_custom), for a trainer service that
--       lacks it
--   loops.cycle(list, size, step) -> the step-th batch of `size` items, cycling through list
--   loops.per_prompt_seeds(sampler): tasks.per_prompt_seeds (each prompt of a seeded request
--       sampled with seeds of its own)
local distill = require("flare.distill")
local grpo = require("flare.grpo")
local losses = require("flare.losses")

local M = {}

function M.cycle(list, size, step)
  local out = {}
  for i = 1, math.min(size, #list) do out[i] = list[((step - 1) * size + i - 1) % #list + 1] end
  return out
end

local function per_token(out, datums)
  local tokens = 0
  for _, d in ipairs(datums) do
    for _, w in ipairs(d.loss_fn_inputs.weights) do tokens = tokens + w end
  end
  return out.metrics.loss / math.max(1, tokens)
end

function M.eval_loss(trainer, samples)
  local datums = distill.sft_datums(samples)
  return per_token(trainer:forward(datums, "cross_entropy"), datums)
end

function M.sft_step(trainer, samples, learning_rate)
  local datums = distill.sft_datums(samples)
  local out = trainer:forward_backward(datums, "cross_entropy")
  local opt = trainer:optim_step{learning_rate = learning_rate}
  return {loss = per_token(out, datums), grad_norm = opt.grad_norm}
end

function M.sft(o)
  local held = o.eval
  local function eval_loss() return M.eval_loss(o.trainer, held) end
  if held and o.log then o.log{step = 0, eval_loss = eval_loss()} end
  for step = o.start_step or 1, o.steps do
    local samples, row = o.batch(step)
    local m = M.sft_step(o.trainer, samples, o.learning_rate)
    row = row or {}
    row.step, row.loss, row.grad_norm = step, m.loss, m.grad_norm
    if held and step == o.steps then row.eval_loss = eval_loss() end
    if o.after_step then o.after_step(row) end
    if o.log then o.log(row) end
  end
end

M.per_prompt_seeds = require("flare.tasks").per_prompt_seeds

local function range(first, last)
  local step = first - 1
  return function()
    step = step + 1
    if step <= last then return step end
  end
end

function M.grpo(o)
  local loss, n = o.loss or "importance_sampling", o.group_size or 8
  local setup = {max_tokens = o.max_tokens}
  for k, v in pairs(o.loss_opts or {}) do setup[k] = v end
  local loss_cfg, adv_opts = grpo.loss_setup(loss, setup)
  adv_opts.normalize_std = adv_opts.normalize_std or o.normalize_std
  local client_loss = o.client_loss and losses.new(loss, loss_cfg)
  local first = o.start_step or 1
  local version, curve, pending = first - 1, {}, nil  -- version: the step the sampler serves
  local function submit(step)
    local problems, prompts = o.problems(step), {}
    for i, p in ipairs(problems) do prompts[i] = p.prompt end
    -- Seeded per step (sample j of a prompt: seed + j - 1): the same completions whatever the
    -- timing, so a run with retried requests ends as one without.
    return {step = step, problems = problems, version = version,
      future = o.sampler:submit{prompts = prompts, n = n, max_tokens = o.max_tokens,
      temperature = o.temperature or 1.0, logprobs = true, seed = ((o.seed or 0) + step) * n}}
  end
  for step in o.each_step or range(first, o.steps) do
    local batch = pending
    if not (batch and batch.step == step and
      step - 1 - batch.version <= (o.max_steps_off_policy or 1)) then
      batch = submit(step)
    end
    local groups = batch.future:wait()
    pending = (o.async and step < o.steps) and submit(step + 1) or nil
    local rewards = {}
    for g, group in ipairs(groups) do
      rewards[g] = {}
      for i, s in ipairs(grpo.completions_of(group)) do
        rewards[g][i] = o.task:reward(batch.problems[g], s.text)
      end
    end
    local datums, kept = grpo.build_datums(groups, rewards, adv_opts)
    local out, opt = {metrics = {}}, {}
    if #datums > 0 then
      if o.ref then grpo.attach_ref_logprobs(datums, o.ref:forward(datums).loss_fn_outputs) end
      if client_loss then
        out = o.trainer:forward_backward_custom(datums, client_loss)
      else
        out = o.trainer:forward_backward(datums, loss, loss_cfg)
      end
      opt = o.trainer:optim_step{learning_rate = o.learning_rate,
        grad_clip_norm = o.grad_clip_norm}
    end
    if o.hotload then o.hotload(step, #datums > 0)
    elseif #datums > 0 then o.syncer:save_and_hotload("grpo-" .. step) end
    version = step
    local timing = o.syncer.last_timing
    local m = grpo.metrics{groups = groups, rewards = rewards, k = 1, datums = datums,
      outputs = out.loss_fn_outputs, sync_s = timing and timing.total_time_s}
    curve[#curve + 1] = m.reward_mean
    o.log({step = step, reward = m.reward_mean, ["pass@1"] = m["pass@1"],
      groups_kept = kept.kept_groups, loss = out.metrics.loss, grad_norm = opt.grad_norm},
      {metrics = m, out = out, curve = curve})
  end
  return curve
end

local fn = "function"
return require("flare.args").checked(M, "flare.loops", {
  cycle = {"list:table", "size:integer", "step:integer"},
  per_prompt_seeds = {"sampler:table"},
  eval_loss = {"trainer:table", "samples:table"},
  sft_step = {"trainer:table", "samples:table", "learning_rate:number"},
  sft = {{"opts", {trainer = "table", batch = fn, steps = "integer", learning_rate = "number",
    log = fn, eval = "table", start_step = "integer", after_step = fn}}},
  grpo = {{"opts", {trainer = "table", syncer = "table", sampler = "table", task = "table",
    problems = fn, steps = "integer", group_size = "integer", max_tokens = "integer",
    temperature = "number", learning_rate = "number", loss = "string", loss_opts = "table",
    normalize_std = "boolean", ref = "table", grad_clip_norm = "number", seed = "integer",
    async = "boolean", max_steps_off_policy = "integer", start_step = "integer",
    each_step = fn, hotload = fn, log = fn, client_loss = "boolean"}}},
})
