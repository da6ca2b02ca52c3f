-- Shared setup of the client specs: one in-process emulator per spec file with
-- a short provision delay, fast polling, and helpers for fresh deployments.
local M = {}

M.BASE_MODEL = "accounts/local/models/tiny-gpt"
M.KEY = "fw_client_spec_secret_0123456789abcdef"

local fw
function M.fw()
  if not fw then
    fw = flare.connect{backend = "emulator", provision_delay_s = 0.05, quiet = true}
  end
  return fw
end

local counter = 0
function M.unique(prefix)
  counter = counter + 1
  return string.format("%s-%d-%s", prefix, counter,
    require("flare.fireworks.options").random_hex(4))
end

-- A READY deployment with one replica up.
function M.ready_deployment(prefix, extra)
  local f = M.fw()
  local cfg = {deployment_id = M.unique(prefix or "dep"), base_model = M.BASE_MODEL,
    min_replica_count = 1,
    max_replica_count = 1}
  for k, v in pairs(extra or {}) do cfg[k] = v end
  local info = f.deployments:create_or_get(cfg)
  return f.deployments:wait_for_ready(info.deployment_id, {poll_interval_s = 0.05, timeout_s = 30})
end

-- Samplers in tests back off for milliseconds, not seconds.
function M.fast_retry(opts)
  local o = {backoff_initial_s = 0.01, backoff_max_s = 0.05, not_ready_interval_s = 0.05}
  for k, v in pairs(opts or {}) do o[k] = v end
  return o
end

-- Path of the flare executable running this spec.
function M.flare_exe()
  local p = io.popen("readlink /proc/$PPID/exe")
  local exe = p:read("*l")
  p:close()
  return exe
end

function M.shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

return M
