-- Online DPO: the policy samples, a verifier ranks each prompt's samples, the best and the
-- worst become a (chosen, rejected) pair, and the trainer takes a DPO step against a frozen
-- reference (the base model); the new weights are synced to the deployment. Runs on the local
-- emulator by default; FIREWORKS_API_KEY (and FIREWORKS_BASE_URL) point it at the cloud.
--
--   flare run scripts/dpo.lua                   # vowels: correct rate and held-out accuracy rise
--   flare run scripts/dpo.lua --beta=0.2 --steps=60 --task=reverse
--   flare run scripts/dpo.lua --resume          # continue after the last checkpoint
--   flare run scripts/dpo.lua --client-loss     # the loss computed in the client (flare.losses)
--
-- Held-out preference accuracy: pairs built once from the base model's samples of held-out
-- problems; the fraction whose implicit reward β·(Δchosen − Δrejected) is > 0 (0 at the start,
-- where the policy is the reference).
local run = flare.recipe{name = "dpo", main_metric = "correct", config = {
  steps = 30, task = "vowels", seed = 0,
  prompts_per_step = 4, group_size = 8, max_tokens = 4, temperature = 1.0,
  learning_rate = 1e-2, beta = 0.1, heldout_prompts = 16,
  client_loss = false,  -- the DPO loss computed in the client (a trainer service without it)
  deployment_id = "dpo-tiny", base_model = "accounts/local/models/tiny-gpt",
  on_exit = "scale_to_zero",                       -- or "delete" / "keep"
}}
local c = run.config
local loss_cfg = {dpo_beta = c.beta}
local client_dpo = c.client_loss and flare.losses.new("dpo", loss_cfg)
local function dpo_pass(t, data, backward)
  if client_dpo then
    return backward and t:forward_backward_custom(data, client_dpo) or t:forward_custom(data,
      client_dpo)
  end
  return backward and t:forward_backward(data, "dpo", loss_cfg) or t:forward(data, "dpo", loss_cfg)
end

if run:plan{
  "deployment " .. c.deployment_id .. " (" .. c.base_model .. "), on exit: " .. c.on_exit,
  "trainer and reference on " .. c.base_model .. ", lr " .. c.learning_rate .. ", beta " .. c.beta,
  string.format("%d steps x %d prompts x %d samples of <= %d tokens; %d held-out prompts",
    c.steps, c.prompts_per_step, c.group_size, c.max_tokens, c.heldout_prompts),
} then return end

local task = flare.tasks.get(c.task)
local function problems(seed, n) return flare.tasks.get(c.task, {seed = seed}):sample(n) end

flare.with_deployment({deployment_id = c.deployment_id, base_model = c.base_model,
    min_replica_count = 0, max_replica_count = 1}, function(info, fw)
  local trainer, syncer = run:trainer(fw, info, {base_model = c.base_model,
    learning_rate = c.learning_rate})
  local ref = fw:trainer{base_model = c.base_model, job_id = "dpo-ref-" .. run.id}
  run:on_exit(function() ref:close() end, "close reference")
  local sampler = fw:sampler{deployment = info}

  -- Samples, verifier scores and verdicts for `ps`; the pairs carry the reference's logprobs.
  local function sample_pairs(ps, seed)
    local prompts = {}
    for i, p in ipairs(ps) do prompts[i] = p.prompt end
    local groups = sampler:sample{prompts = prompts, n = c.group_size, seed = seed,
      max_tokens = c.max_tokens, temperature = c.temperature, logprobs = true}
    local scores, verdicts = {}, {}
    for g, group in ipairs(groups) do
      scores[g], verdicts[g] = {}, {}
      for i, s in ipairs(group) do
        scores[g][i], verdicts[g][i] = task:reward(ps[g], s.text), task:verify(ps[g], s.text)
      end
    end
    local pairs, kept = flare.dpo.pairs(groups, scores)
    if #pairs > 0 then flare.grpo.attach_ref_logprobs(pairs, ref:forward(pairs).loss_fn_outputs) end
    return pairs, kept, flare.dpo.correct_rate(groups, verdicts)
  end

  -- The held-out pairs come from the base model (the first snapshot), before any step; a
  -- resumed run reads them back from its run directory.
  local heldout_file = run.dir .. "/heldout_pairs.json"
  if run.state then trainer:load_state(run.state.trainer_state) end
  syncer:save_and_hotload("step-" .. (run.start_step - 1))
  local heldout
  if run.resumed and flare.fs.exists(heldout_file) then
    heldout = flare.json.decode(flare.fs.read_file(heldout_file))
  else
    heldout = sample_pairs(problems(c.seed + 7919, c.heldout_prompts), c.seed * 7 + 1)
    flare.fs.write_file_atomic(heldout_file, flare.json.encode(heldout))
  end
  if #heldout == 0 then error("no held-out pair: every held-out prompt's samples scored alike") end

  local curve = {}
  for step in run:steps() do
    local pairs, kept, correct = sample_pairs(problems(c.seed * 100003 + step, c.prompts_per_step),
      (c.seed * 100003 + step) * c.group_size)
    local out, opt = {metrics = {}}, {}
    if #pairs > 0 then
      out = dpo_pass(trainer, pairs, true)
      opt = trainer:optim_step{learning_rate = c.learning_rate}
    end
    syncer:save_and_hotload("step-" .. step)
    trainer:save_state("step-" .. step)
    run:checkpoint{step = step, state = {trainer_state = "step-" .. step}}
    local held = dpo_pass(trainer, heldout, false).metrics
    curve[#curve + 1] = correct
    run:log{step = step, correct = correct, pairs = kept.pairs, loss = out.metrics.loss,
      train_accuracy = out.metrics.preference_accuracy, grad_norm = opt.grad_norm,
      heldout_accuracy = held.preference_accuracy, heldout_margin = held.reward_margin,
      curve = flare.recipe.sparkline(curve, 0, 1)}
  end
  if #curve > 0 then
    print(string.format("correct %.3f -> %.3f  %s", curve[1], curve[#curve],
      flare.recipe.sparkline(curve, 0, 1)))
  end
end, {fw = run:connect(), on_exit = c.on_exit})
