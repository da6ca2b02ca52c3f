-- flare.loops: the training loops multi-stage recipes share, on a trainer client.
--
--   loops.sft{trainer =, batch = function(step) -> samples, steps =, learning_rate =,
--     log = function(metrics), eval = nil}
--       cross_entropy steps on in-memory samples ({prompt_tokens, tokens}, as
--       flare.distill.text_sample or rejection_sample give them); logs {step, loss}, where
--       loss is per completion token; with eval (held-out samples) also eval_loss, by a forward
--       pass, before the first step (step 0) and after the last
--   loops.grpo{trainer =, syncer =, sampler =, task =, problems = function(step) -> problems,
--     steps =, group_size = 8, max_tokens =, temperature = 1.0, learning_rate =,
--     loss = "importance_sampling", seed = 0, log = function(metrics)}
--       sample -> verifier reward -> flare.grpo datums -> forward_backward -> optim_step ->
--       save_and_hotload; logs {step, reward, pass@1, groups_kept, loss, grad_norm};
--       returns the reward curve
--   loops.cycle(list, size, step) -> the step-th batch of `size` items, cycling through list
local distill = require("flare.distill")
local grpo = require("flare.grpo")

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

function M.sft(o)
  local held = o.eval and distill.sft_datums(o.eval)
  local function eval_loss() return per_token(o.trainer:forward(held, "cross_entropy"), held) end
  if held then o.log{step = 0, eval_loss = eval_loss()} end
  for step = 1, o.steps do
    local datums = distill.sft_datums(o.batch(step))
    local out = o.trainer:forward_backward(datums, "cross_entropy")
    local opt = o.trainer:optim_step{learning_rate = o.learning_rate}
    o.log{step = step, loss = per_token(out, datums), grad_norm = opt.grad_norm,
      eval_loss = (held and step == o.steps) and eval_loss() or nil}
  end
end

function M.grpo(o)
  local loss, n = o.loss or "importance_sampling", o.group_size or 8
  local loss_cfg, adv_opts = grpo.loss_setup(loss, {max_tokens = o.max_tokens})
  local curve = {}
  for step = 1, o.steps do
    local problems, prompts = o.problems(step), {}
    for i, p in ipairs(problems) do prompts[i] = p.prompt end
    -- Seeded per step: the same completions whatever the timing of the requests.
    local groups = o.sampler:sample{prompts = prompts, n = n, max_tokens = o.max_tokens,
      temperature = o.temperature or 1.0, logprobs = true, seed = ((o.seed or 0) + step) * n}
    local rewards = {}
    for g, group in ipairs(groups) do
      rewards[g] = {}
      for i, s in ipairs(grpo.completions_of(group)) do
        rewards[g][i] = o.task:reward(problems[g], s.text)
      end
    end
    local datums, kept = grpo.build_datums(groups, rewards, adv_opts)
    local out, opt = {metrics = {}}, {}
    if #datums > 0 then
      out = o.trainer:forward_backward(datums, loss, loss_cfg)
      opt = o.trainer:optim_step{learning_rate = o.learning_rate}
      o.syncer:save_and_hotload("grpo-" .. step)
    end
    local m = grpo.metrics{groups = groups, rewards = rewards, k = 1}
    curve[#curve + 1] = m.reward_mean
    o.log{step = step, reward = m.reward_mean, ["pass@1"] = m["pass@1"],
      groups_kept = kept.kept_groups, loss = out.metrics.loss, grad_norm = opt.grad_norm}
  end
  return curve
end

local fn = "function"
return require("flare.args").checked(M, "flare.loops", {
  cycle = {"list:table", "size:integer", "step:integer"},
  sft = {{"opts", {trainer = "table", batch = fn, steps = "integer", learning_rate = "number",
    log = fn, eval = "table"}}},
  grpo = {{"opts", {trainer = "table", syncer = "table", sampler = "table", task = "table",
    problems = fn, steps = "integer", group_size = "integer", max_tokens = "integer",
    temperature = "number", learning_rate = "number", loss = "string", seed = "integer",
    log = fn}}},
})
