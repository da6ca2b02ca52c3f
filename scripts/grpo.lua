-- GRPO: train -> sample -> sync weights. Runs on the local emulator by default;
-- FIREWORKS_API_KEY (and FIREWORKS_BASE_URL) point it at the cloud.
--
--   flare run scripts/grpo.lua                       # vowels task: reward ~0 -> >= 0.8
--   flare run scripts/grpo.lua --steps=100 --task=addition --group-size=16 --max-tokens=8
--   flare run scripts/grpo.lua --async               # sample step k+1 while step k trains
--   flare run scripts/grpo.lua --loss=dr_grpo --kl-beta=0.1   # a KL penalty to the base model
--     --loss: importance_sampling, ppo, grpo, dr_grpo, gspo, cispo, reinforce (docs/losses.md)
--     --ref-model: the reference (default: the base model when --kl-beta > 0); with one, `kl`
--     is logged (the policy's KL to it, --kl-estimator k1/k2/k3), penalised by --kl-beta
--     --client-loss: the loss computed in the client (flare.losses), for a trainer service
--     that lacks it (Tinker's, for one, has no dr_grpo, gspo or reinforce)
--   flare run scripts/grpo.lua --resume              # continue the last run after its last
--                                                    # checkpoint
-- Resuming needs the emulator's state to outlive the process: set FLARE_EMULATOR_STATE_DIR
-- (or FLARE_EMULATOR_URL for a running `flare serve`).

local run = flare.recipe{name = "grpo", main_metric = "reward", config = {
  steps = 40, task = "vowels", seed = 0,
  prompts_per_step = 2, group_size = 8,            -- completions per prompt
  max_tokens = 4, temperature = 1.0,
  learning_rate = 1e-2, loss = "importance_sampling", -- or any of flare.grpo.losses
  clip_low = 0.2, clip_high = 0.2, tis_cap = 0,    -- DAPO: clip_high 0.28; TIS cap (0 = off)
  kl_beta = 0, kl_estimator = "k3", ref_model = "", grad_clip_norm = 0, client_loss = false,
  normalize_std = false,  -- Tinker: advantage = reward - group mean (grpo, gspo: / group std)
  base_every = 20,  -- a full base snapshot every K steps, deltas between
  async = false, max_steps_off_policy = 1,         -- async: how stale a sampled batch may be
  deployment_id = "grpo-tiny", base_model = "accounts/local/models/tiny-gpt",
  on_exit = "scale_to_zero",                       -- or "delete" / "keep"
}}
local c = run.config
flare.grpo.loss_setup(c.loss)  -- an unknown --loss fails before anything is created
local ref_model = c.ref_model ~= "" and c.ref_model or (c.kl_beta > 0 and c.base_model or nil)

if run:plan{
  "deployment " .. c.deployment_id .. " (" .. c.base_model .. "), on exit: " .. c.on_exit,
  "trainer on " .. c.base_model .. ", lr " .. c.learning_rate .. ", loss " .. c.loss ..
    (c.client_loss and " (computed in the client)" or "") ..
    (ref_model and (", reference " .. ref_model .. ", kl_beta " .. c.kl_beta) or ""),
  string.format("%d steps x %d prompts x %d samples of <= %d tokens, %s", c.steps,
    c.prompts_per_step,
    c.group_size, c.max_tokens, c.async and "async" or "sync"),
} then return end

-- Problems of step s depend only on (seed, s): a resumed run sees the same ones.
local function problems_for(step)
  return flare.tasks.get(c.task, {seed = c.seed * 100003 + step}):sample(c.prompts_per_step)
end

flare.with_deployment({deployment_id = c.deployment_id, base_model = c.base_model,
    min_replica_count = 0, max_replica_count = 1}, function(info, fw)
  -- One trainer job per run: --resume reattaches to it (or recreates it) and loads its saved state.
  local trainer, syncer = run:trainer(fw, info, {base_model = c.base_model,
    learning_rate = c.learning_rate})
  if run.state then trainer:load_state(run.state.trainer_state) end
  -- The reference: a trainer job that never steps, asked for logprobs only (forward).
  local ref = ref_model and fw:trainer{base_model = ref_model, job_id = "grpo-ref-" .. run.id}
  if ref then run:on_exit(function() ref:close() end, "close reference") end
  syncer:save_and_hotload("step-" .. (run.start_step - 1))
  local curve = flare.loops.grpo{trainer = trainer, syncer = syncer, ref = ref,
    sampler = fw:sampler{deployment = info}, task = flare.tasks.get(c.task),
    problems = problems_for, steps = c.steps, start_step = run.start_step,
    each_step = run:steps(), group_size = c.group_size, max_tokens = c.max_tokens,
    temperature = c.temperature, learning_rate = c.learning_rate, loss = c.loss,
    loss_opts = {clip_low = c.clip_low, clip_high = c.clip_high, kl_beta = c.kl_beta,
      kl_estimator = c.kl_estimator, tis_cap = c.tis_cap,
      sequences = c.prompts_per_step * c.group_size},
    normalize_std = c.normalize_std, grad_clip_norm = c.grad_clip_norm, seed = c.seed * 100003,
    client_loss = c.client_loss,
    async = c.async, max_steps_off_policy = c.max_steps_off_policy,
    hotload = function(step)
      local snapshot = syncer:save_and_hotload("step-" .. step,
        step % c.base_every == 0 and "base" or nil)
      trainer:save_state("step-" .. step)
      run:checkpoint{step = step, snapshot = snapshot, state = {trainer_state = "step-" .. step}}
    end,
    log = function(row, s)
      row.truncated, row.logprob_mismatch = s.metrics.truncation_rate, s.metrics.logprob_mismatch
      row.kl, row.sync_s = s.out.metrics.kl, s.metrics.sync_s
      row.curve = flare.recipe.sparkline(s.curve, 0, 1)
      run:log(row)
    end}
  if #curve > 0 then
    print(string.format("reward %.3f -> %.3f  %s", curve[1], curve[#curve],
      flare.recipe.sparkline(curve, 0, 1)))
  end
end, {fw = run:connect(), on_exit = c.on_exit})
