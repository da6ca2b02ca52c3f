-- Prints the emulator's deployments and trainer jobs as one JSON line (used by e2e.lua).
local fw = require("flare.recipe").connect{quiet = true}
local out = {deployments = {}, trainer_jobs = {}}
for _, d in ipairs(fw.deployments:list()) do
  out.deployments[d.deployment_id] = {state = d.state, min = d.min_replica_count or 0,
    max = d.max_replica_count or 0}
end
local r = fw:request{path = "/v1/accounts/" .. fw.account_id .. "/rlorTrainerJobs",
  what = "list trainer jobs"}
for _, j in ipairs(r.body and (r.body.rlorTrainerJobs or r.body.trainerJobs) or {}) do
  out.trainer_jobs[tostring(j.name):match("[^/]+$")] = j.state
end
print(flare.json.encode(flare.json.object(out)))
