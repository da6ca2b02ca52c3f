-- List deployments whose id starts with a prefix and scale them to zero (or delete them).
--
--   flare run scripts/cleanup.lua --prefix=grpo- --dry-run     # show what would change
--   flare run scripts/cleanup.lua --prefix=grpo-               # scale to zero
--   flare run scripts/cleanup.lua --prefix=grpo- --delete      # delete them
local run = flare.recipe{name = "cleanup", config = {prefix = "", delete = false, all = false}}
local c = run.config
if c.prefix == "" and not c.all then
  flare.error{code = "config",
    message = "give --prefix=ID_PREFIX (or --all to match every deployment)"}
end

local fw = run:connect()
local mgr = fw.deployments
local targets = {}
for _, d in ipairs(mgr:list()) do
  if d.deployment_id:sub(1, #c.prefix) == c.prefix then
    local busy = (d.max_replica_count or 0) > 0 or (d.min_replica_count or 0) > 0
    print(string.format("%-32s %-10s replicas %s..%s%s", d.deployment_id, d.state or "?",
      tostring(d.min_replica_count or 0), tostring(d.max_replica_count or 0),
      (c.delete or busy) and "" or "  (already at zero)"))
    if c.delete or busy then targets[#targets + 1] = d end
  end
end

local action = c.delete and "delete" or "scale to zero"
if run:plan{string.format("%s %d deployment(s)", action, #targets)} then return end
for _, d in ipairs(targets) do
  if c.delete then mgr:delete(d.deployment_id) else mgr:scale_to_zero(d.deployment_id) end
  print(action .. ": " .. d.deployment_id)
end
print(string.format("%d deployment(s) changed", #targets))
