-- flare.with_deployment(config, fn, opts): create (or reuse) a deployment, wait until
-- it is ready, call fn(info, fw), and release it afterwards however fn ends —
-- normal return, error, SIGINT or SIGTERM.
--
--   config   the DeploymentManager create_or_get config ({deployment_id =, base_model =, ...})
--   opts     {on_exit = "scale_to_zero" | "delete" | "keep" (default "scale_to_zero"),
--             fw = <connection> (default flare.connect()), force_recreate = false,
--             timeout_s = 600, poll_interval_s = (0.25 on the emulator, else the manager's 15)}
-- Returns what fn returns. A deployment found scaled to zero is scaled back up
-- to the config's replica counts first.
local args = require("flare.args")
local cleanup = require("flare.cleanup")

local releases = {scale_to_zero = true, delete = true, keep = true}

local function release(mgr, id, how)
  if how == "delete" then
    mgr:delete(id)
  elseif how == "scale_to_zero" then
    mgr:scale_to_zero(id)
  end
end

local function with_deployment(config, fn, opts)
  if type(config.deployment_id) ~= "string" then
    args.invalid("flare.with_deployment", "config.deployment_id (a string) is required")
  end
  opts = opts or {}
  local how = opts.on_exit or "scale_to_zero"
  if not releases[how] then
    args.invalid("flare.with_deployment", "option 'on_exit' must be \"scale_to_zero\", " ..
      "\"delete\" or \"keep\", got " .. tostring(how))
  end
  local fw = opts.fw or flare.connect()
  local mgr = fw.deployments
  local id = config.deployment_id
  -- Registered before the create call so an interrupt during creation still releases it.
  local handle = cleanup.defer(function() release(mgr, id, how) end, how .. " " .. id)
  local info = mgr:create_or_get(config, {force_recreate = opts.force_recreate})
  local max = config.max_replica_count or 1
  local scaled_up = info.max_replica_count ~= nil and info.max_replica_count < max
  if scaled_up then
    mgr:update(id, {min_replica_count = config.min_replica_count or 0, max_replica_count = max})
  end
  -- The emulator provisions in about a second; the SDK's 15 s poll would dominate.
  local poll = opts.poll_interval_s or (fw.backend == "emulator" and 0.25 or nil)
  info = mgr:wait_for_ready(id, {timeout_s = opts.timeout_s or 600, poll_interval_s = poll}) or info
  if scaled_up then
    -- A replica starts on the first request (503 DEPLOYMENT_SCALING_UP until it serves).
    mgr:warmup(info, {max_retries = 120, retry_interval_s = poll or 5})
  end
  local results = {pcall(fn, info, fw)}
  -- Released now; if that fails (or is interrupted) the deferred release retries at exit.
  local released, release_err = pcall(release, mgr, id, how)
  if released then handle:cancel() end
  if not results[1] then error(results[2], 0) end
  if not released then error(release_err, 0) end
  return unpack(results, 2, table.maxn(results))
end

return args.wrap(with_deployment, "flare.with_deployment", {"config:table", "fn:function",
  {"opts", {on_exit = "string", fw = "table", force_recreate = "boolean", timeout_s = "number",
    poll_interval_s = "number"}}})
