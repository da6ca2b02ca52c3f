-- flare.release.candidate: a release candidate in one call: supervised steps on flare.tasks
-- problems from the base model, the snapshot hotloaded onto its own deployment, evaluated on
-- a frozen suite, registered with its evals and its endpoint recorded for the gateway.
--
--   candidate.build{conn =, family =, deployment_id =, base_model =, plan =, suite =, run =,
--     registry =, parent =, learning_rate = 1e-2, batch = 16, seed = 0}
--   -> {version = record, results = suite results (nil without a suite), info = deployment,
--       snapshot =}
-- plan: a list of phases {tasks = {"sort", "vowels"}, steps = N, options = {sort = {...}}};
-- each step trains on `batch` problems split evenly over the phase's tasks, problems drawn
-- from seed + step.
local args = require("flare.args")
local distill = require("flare.distill")
local tasks = require("flare.tasks")
local errors = require("flare.release.errors")

local M = {}
local WHO = "flare.release.candidate.build"

-- Trains the plan on a trainer hotloading deployment info; -> the base snapshot's identity.
function M.train(conn, info, o)
  local trainer = conn:trainer{base_model = o.base_model, learning_rate = o.learning_rate or 1e-2,
    hot_load_deployment_id = info.deployment_id}
  local syncer = flare.weight_syncer{policy_client = trainer, deploy_mgr = conn.deployments,
    deployment_id = info.deployment_id, base_model = o.base_model, quiet = true}
  local batch, step = o.batch or 16, 0
  for i, phase in ipairs(o.plan) do
    if type(phase.tasks) ~= "table" or #phase.tasks == 0 or type(phase.steps) ~= "number" then
      errors.invalid(WHO, "option 'plan[" .. i .. "]' must be {tasks = {NAME, ...}, steps = N}")
    end
    for _ = 1, phase.steps do
      step = step + 1
      local samples = {}
      for _, name in ipairs(phase.tasks) do
        local opts = {seed = (o.seed or 0) + step}
        for k, v in pairs((phase.options or {})[name] or {}) do opts[k] = v end
        local per_task = math.max(1, math.floor(batch / #phase.tasks))
        for _, p in ipairs(tasks.get(name, opts):sample(per_task)) do
          samples[#samples + 1] = distill.text_sample(p.prompt, tostring(p.answer) .. "\n")
        end
      end
      trainer:forward_backward(distill.sft_datums(samples), "cross_entropy")
      trainer:optim_step{learning_rate = o.learning_rate or 1e-2}
    end
  end
  local snapshot = syncer:save_and_hotload(info.deployment_id .. "-" .. step, "base")
  trainer:close()
  return snapshot, step
end

function M.build(o)
  o = args.options(o, {conn = "table", family = "string", deployment_id = "string",
    base_model = "string", plan = "table", suite = "nil|table", run = "nil|table",
    registry = "nil|string", parent = "nil|string", learning_rate = "nil|number",
    batch = "nil|number", seed = "nil|number", stage = "nil|string"}, WHO)
  for _, k in ipairs({"conn", "family", "deployment_id", "base_model", "plan"}) do
    if o[k] == nil then errors.invalid(WHO, "option '" .. k .. "' is required") end
  end
  local conn = o.conn
  local info = conn.deployments:create_or_get{deployment_id = o.deployment_id,
    base_model = o.base_model, min_replica_count = 1, max_replica_count = 1}
  info = conn.deployments:wait_for_ready(info.deployment_id, {poll_interval_s = 0.05,
    timeout_s = 120})
  local snapshot, steps = M.train(conn, info, o)
  local results
  if o.suite then
    results = o.suite:run{sampler = conn:sampler{deployment = info, concurrency = 16}}
  end
  local release = require("flare.release")
  local v = release.register{family = o.family, run = o.run, deployment = info,
    snapshot = snapshot, parent = o.parent, registry = o.registry, stage = o.stage,
    evals = results and o.suite:summary(results) or nil}
  if results then results.version = v.id end
  release.set_endpoint(v.id, {base_url = conn.inference_url, registry = o.registry,
    model = "accounts/" .. conn.account_id .. "/deployments/" .. info.deployment_id})
  return {version = v, results = results, info = info, snapshot = snapshot, steps = steps}
end

return M
