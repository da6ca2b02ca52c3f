-- Deployments from the command line.
--
--   flare run scripts/deploy.lua --action=create --id=my-dep [--base-model=...]  # create and wait
--   flare run scripts/deploy.lua --action=status --id=my-dep
--   flare run scripts/deploy.lua --action=sample --id=my-dep --prompt="abc:" --n=4
--   flare run scripts/deploy.lua --action=scale-to-zero --id=my-dep
--   flare run scripts/deploy.lua --action=delete --id=my-dep
local run = flare.recipe{name = "deploy", config = {
  action = "status", id = "flare-dev", base_model = "accounts/local/models/tiny-gpt",
  prompt = "hello", n = 1, max_tokens = 16, temperature = 1.0, timeout_s = 600,
}}
local c = run.config
local actions = {create = true, status = true, sample = true, ["scale-to-zero"] = true,
  delete = true}
if not actions[c.action] then
  flare.error{code = "config",
    message = "--action must be create, status, sample, scale-to-zero or delete"}
end
if run:plan{c.action .. " deployment " .. c.id} then return end

local fw = run:connect()
local mgr = fw.deployments

-- The snapshot a replica serves (hotload status), or "-" when no replica is up.
local function serving(info)
  if info.state ~= "READY" then return "-" end
  local ok, st = pcall(mgr.hotload_check_status, mgr, {deployment_id = info.deployment_id,
    base_model = info.base_model or c.base_model})
  if not ok and type(st) == "table" and st.code == "interrupted" then error(st, 0) end
  local rep = ok and st.replicas and st.replicas[1]
  return rep and rep.current_snapshot_identity or "-"
end

local function show(info)
  if not info then
    print(c.id .. ": not found")
    return
  end
  print(string.format("%s  state %s  replicas %s..%s  serving %s", info.deployment_id,
    tostring(info.state), tostring(info.min_replica_count), tostring(info.max_replica_count),
    serving(info)))
end

if c.action == "create" then
  -- Stopped before the new deployment is ready (Ctrl-C, an error): no replica is left behind.
  local release = not mgr:get(c.id) and flare.defer(function()
    if mgr:get(c.id) then mgr:scale_to_zero(c.id) end
  end, "scale " .. c.id .. " to zero (create did not finish)")
  mgr:create_or_get{deployment_id = c.id, base_model = c.base_model, min_replica_count = 0,
    max_replica_count = 1}
  show(mgr:wait_for_ready(c.id, {timeout_s = c.timeout_s}))
  if release then release:cancel() end
elseif c.action == "status" then
  show(mgr:get(c.id))
elseif c.action == "sample" then
  local info = mgr:get(c.id) or flare.error{code = "not_found", message = "no deployment " .. c.id}
  local groups = fw:sampler{deployment = info}:sample{prompts = {c.prompt}, n = c.n,
    max_tokens = c.max_tokens, temperature = c.temperature}
  for i, s in ipairs(groups[1]) do
    print(string.format("[%d] %q (%s, %d tokens)", i, s.text, s.finish_reason, #s.tokens))
  end
elseif c.action == "scale-to-zero" then
  mgr:scale_to_zero(c.id)
  show(mgr:get(c.id))
elseif c.action == "delete" then
  mgr:delete(c.id)
  print(c.id .. ": deleted")
end
