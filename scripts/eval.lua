-- pass@k of a deployment on a generated task.
--
--   flare run scripts/eval.lua --deployment-id=grpo-tiny --task=vowels --n=8 --k=1
local run = flare.recipe{name = "eval", config = {
  deployment_id = "grpo-tiny", task = "vowels", seed = 1000, problems = 16,
  n = 8, k = 1, max_tokens = 4, temperature = 1.0, on_exit = "scale_to_zero",
}}
local c = run.config
if run:plan{string.format("sample %d x %d completions of %s from %s", c.problems, c.n, c.task,
  c.deployment_id)} then return end

-- The deployment is scaled up if it was at zero, and back to zero afterwards
-- (--on-exit=keep leaves it).
local fw = run:connect()
local info = fw.deployments:get(c.deployment_id)
  or flare.error{code = "not_found", message = "no deployment " .. c.deployment_id}
flare.with_deployment({deployment_id = c.deployment_id, base_model = info.base_model,
  max_replica_count = 1},
  function(dep)
  local task = flare.tasks.get(c.task, {seed = c.seed})
  local r = flare.tasks.evaluate(fw:sampler{deployment = dep}, task, task:sample(c.problems),
    {n = c.n, k = c.k, max_tokens = c.max_tokens, temperature = c.temperature})
  run:log{task = c.task, reward_mean = r.reward_mean, correct_rate = r.correct_rate,
    ["pass@" .. c.k] = r.pass_at_k, samples = r.samples}
end, {fw = fw, on_exit = c.on_exit})
