-- flare.fireworks.deployments: DeploymentManager (fw.deployments).
--   mgr:create_or_get(config, {force_recreate = false, quiet = })  -> DeploymentInfo
--       recreates a deployment found FAILED, DELETED or DELETING; a 409 on create means
--       someone else created it: it is fetched instead.
--   mgr:get(id)                     -> DeploymentInfo or nil (404)
--   mgr:list()                      -> {DeploymentInfo, ...}
--   mgr:wait_for_ready(id, {timeout_s = 600, poll_interval_s = fw:poll_interval("deployment"),
--       quiet = }) -> DeploymentInfo. READY -> done; FAILED/DELETED/DELETING -> error; while
--       CREATING a tiny completion is probed and a 200 counts as ready. mgr.boot_time_s = the
--       seconds it took.
--   mgr:update(id, fields, mask)    fields in snake_case (as DeploymentConfig); mask = list or
--                                   comma string of snake_case names (default: the fields' names)
--   mgr:scale_to_zero(id)           PATCH {minReplicaCount = 0, maxReplicaCount = 0}
--   mgr:delete(id, {timeout_s = 60, poll_interval_s = fw:poll_interval("deletion"), quiet = })
--                                   waits until 404 or DELETED
--   mgr:hotload{deployment_id, base_model, snapshot_identity, incremental_snapshot_metadata,
--               reset_prompt_cache = true (false is sent as false; dropped only for a server
--               that rejects the field), source_url = nil}
--   mgr:hotload_check_status{deployment_id, base_model}  -> {replicas = {...}}
--   mgr:hotload_and_wait{deployment_id, base_model, snapshot_identity,
--       incremental_snapshot_metadata, timeout_seconds = 400,
--       poll_interval_s = fw:poll_interval("hotload"), reset_prompt_cache = true, quiet = }
--       -> true, or raises; mgr.last_hotload_error_message says why the last one failed (nil
--       after a success)
--   mgr:reattach_trainer(deployment_or_id, {base_model =, trainer_job_name =, timeout_s =,
--       poll_interval_s = fw:poll_interval("hotload")})  -> DeploymentInfo
--       points the deployment at another trainer's bucket (PATCH hotLoadTrainerJob) and waits
--       until a fresh replica is up; a no-op when it is attached to that trainer already
--   mgr:warmup(model_or_info, {max_retries = 30, retry_interval_s = fw:poll_interval("warmup")})
--       -> true, or raises
--   mgr.DeploymentConfig            flare.fireworks.deployment_config (from_training_profile, ...)
--   DeploymentInfo = {deployment_id, name, state, hot_load_bucket_url, hot_load_trainer_job,
--       deployment_shape_version, inference_model, base_model, min_replica_count,
--       max_replica_count}
local options = require("flare.fireworks.options")
local config_mod = require("flare.fireworks.deployment_config")
local progress = require("flare.fireworks.progress")

local M = {}
M.__index = M
M.DeploymentConfig = config_mod

local raise = options.raise

function M.new(fw)
  return setmetatable({fw = fw, boot_time_s = nil, last_hotload_error_message = nil}, M)
end

function M:__tostring()
  return "DeploymentManager(account " .. self.fw.account_id .. ")"
end

function M:_name(id)
  return "accounts/" .. self.fw.account_id .. "/deployments/" .. id
end

function M:_path(id)
  return "/v1/accounts/" .. self.fw.account_id .. "/deployments/" .. id
end

local function check_id(id, who)
  if type(id) ~= "string" or id == "" then
    raise("invalid_argument", who .. ": deployment_id must be a non-empty string, got " .. type(id))
  end
end

function M:_info(body)
  local id = body.name and body.name:match("/deployments/([^/]+)$") or body.deploymentId
  return {
    deployment_id = id,
    name = body.name,
    state = body.state or "UNKNOWN",
    hot_load_bucket_url = body.hotLoadBucketUrl,
    hot_load_trainer_job = body.hotLoadTrainerJob,
    deployment_shape_version = body.deploymentShapeVersion or body.deploymentShape,
    inference_model = self:_name(id),
    base_model = body.baseModel,
    min_replica_count = tonumber(body.minReplicaCount),
    max_replica_count = tonumber(body.maxReplicaCount),
  }
end

function M:get(id)
  check_id(id, "get")
  local r = self.fw:request{path = self:_path(id), accept = {404}, what = "get deployment " ..
    self:_name(id)}
  if r.status == 404 then return nil end
  return self:_info(r.body)
end

function M:list()
  local out, token = {}, nil
  repeat
    local path = "/v1/accounts/" .. self.fw.account_id .. "/deployments?pageSize=200" ..
      (token and ("&pageToken=" .. token) or "")
    local r = self.fw:request{path = path, what = "list deployments of account " ..
      self.fw.account_id}
    for _, d in ipairs(r.body.deployments or {}) do out[#out + 1] = self:_info(d) end
    token = r.body.nextPageToken
  until not token or token == ""
  return out
end

local recreate_states = {FAILED = true, DELETED = true, DELETING = true}

function M:create_or_get(config, opts)
  local cfg = config_mod.validate(config)
  opts = options.check(opts, {force_recreate = "boolean", quiet = "boolean", timeout_s = "number"},
    "create_or_get")
  local existing = self:get(cfg.deployment_id)
  if existing then
    if not opts.force_recreate and not recreate_states[existing.state] then return existing end
    self:delete(cfg.deployment_id, {quiet = opts.quiet})
  end
  local r = self.fw:request{
    method = "POST",
    path = "/v1/accounts/" .. self.fw.account_id .. "/deployments" .. config_mod.query(cfg),
    body = config_mod.body(cfg, self.fw.account_id),
    accept = {409},
    what = "create deployment " .. self:_name(cfg.deployment_id),
  }
  if r.status == 409 then
    local info = self:get(cfg.deployment_id)
    if not info then
      raise("already_exists", "create deployment " .. self:_name(cfg.deployment_id) ..
        ": the server says it exists but it cannot be read; retry", {status = 409,
          retryable = true})
    end
    return info
  end
  return self:_info(r.body)
end

-- A tiny completion: 200 means the deployment serves (it may before the control plane says READY).
-- The SDK's probe: prompt [1, 2], 4 tokens, greedy, 10 s (WARMUP_PROBE_TIMEOUT_S).
function M:_probe(id)
  local ok, r = pcall(self.fw.request, self.fw, {
    method = "POST", plane = "inference", path = "/inference/v1/completions", retries = 1,
    body = {model = self:_name(id), prompt = {1, 2}, max_tokens = 4, temperature = 0},
    accept = {400, 404, 408, 425, 429, 500, 502, 503, 504}, timeout_s = 10,
    what = "probe deployment " .. self:_name(id),
  })
  if not ok and type(r) == "table" and r.code == "interrupted" then error(r, 0) end
  return ok and r.status == 200
end

function M:wait_for_ready(id, opts)
  check_id(id, "wait_for_ready")
  opts = options.check(opts, {timeout_s = "number", poll_interval_s = "number", quiet = "boolean"},
    "wait_for_ready")
  local timeout = opts.timeout_s or 600
  local interval = opts.poll_interval_s or self.fw:poll_interval("deployment")
  local p = progress.new("deployment " .. id, {quiet = self.fw:_quiet(opts)})
  while true do
    local info = self:get(id)
    if not info then
      p:finish("not found")
      raise("not_found", "wait_for_ready: deployment " .. self:_name(id) ..
        " does not exist; create it with create_or_get first", {status = 404})
    end
    p:update(info.state)
    if info.state == "READY" then
      p:finish("READY")
      self.boot_time_s = p:elapsed()
      return info
    end
    if info.state == "FAILED" or info.state == "DELETED" or info.state == "DELETING" then
      p:finish(info.state)
      raise("deployment_failed", "wait_for_ready: deployment " .. self:_name(id) .. " is " ..
        info.state ..
        "; recreate it with create_or_get{...} (force_recreate = true)")
    end
    if info.state == "CREATING" and self:_probe(id) then
      p:finish("serving (control plane says CREATING)")
      self.boot_time_s = p:elapsed()
      return info
    end
    if p:elapsed() + interval > timeout then
      p:finish("timed out")
      raise("timeout",
        string.format("wait_for_ready: deployment %s still %s after %.0f s; raise timeout_s or " ..
        "check the deployment", self:_name(id), info.state, p:elapsed()), {retryable = true})
    end
    flare.sleep(interval)
  end
end

local function camel(s)
  return (s:gsub("_(%l)", function(c) return c:upper() end))
end

function M:update(id, fields, mask)
  check_id(id, "update")
  if type(fields) ~= "table" then raise("invalid_argument", "update: fields must be a table") end
  local body, names = {}, {}
  for k, v in pairs(fields) do
    if type(k) ~= "string" then raise("invalid_argument", "update: field names must be strings") end
    local snake = k:gsub("(%u)", function(c) return "_" .. c:lower() end)
    if not config_mod.spec[snake] then
      local hint = options.did_you_mean(snake, (function()
        local t = {} for n in pairs(config_mod.spec) do t[#t + 1] = n end return t end)())
      raise("invalid_argument", "update: unknown field '" .. k .. "'" .. (hint and
        (" (did you mean '" .. hint .. "'?)") or ""))
    end
    body[camel(snake)] = v
    names[#names + 1] = snake
  end
  table.sort(names)
  if type(mask) == "table" then
    mask = table.concat(mask, ",")
  elseif mask ~= nil and type(mask) ~= "string" then
    raise("invalid_argument",
      "update: mask must be a list of field names or a comma-separated string")
  end
  mask = mask or table.concat(names, ",")
  local r = self.fw:request{method = "PATCH", path = self:_path(id) .. "?updateMask=" .. mask,
    body = body,
    what = "update deployment " .. self:_name(id)}
  return self:_info(r.body)
end

function M:scale_to_zero(id)
  check_id(id, "scale_to_zero")
  local r = self.fw:request{method = "PATCH",
    path = self:_path(id) .. "?updateMask=min_replica_count,max_replica_count",
    body = {minReplicaCount = 0, maxReplicaCount = 0}, what = "scale deployment " ..
      self:_name(id) .. " to zero"}
  return self:_info(r.body)
end

function M:delete(id, opts)
  check_id(id, "delete")
  opts = options.check(opts, {timeout_s = "number", poll_interval_s = "number", quiet = "boolean"},
    "delete")
  local r = self.fw:request{method = "DELETE", path = self:_path(id) ..
    "?ignoreChecks=true&hard=true",
    accept = {404}, what = "delete deployment " .. self:_name(id)}
  if r.status == 404 then return true end
  local timeout, interval = opts.timeout_s or 60, opts.poll_interval_s or
    self.fw:poll_interval("deletion")
  local p = progress.new("deleting " .. id, {quiet = self.fw:_quiet(opts)})
  while true do
    local info = self:get(id)
    if not info or info.state == "DELETED" then
      p:finish("deleted")
      return true
    end
    p:update(info.state)
    if p:elapsed() + interval > timeout then
      p:finish("timed out")
      raise("timeout", string.format("delete: deployment %s still %s after %.0f s", self:_name(id),
        info.state,
        p:elapsed()), {retryable = true})
    end
    flare.sleep(interval)
  end
end

local hotload_spec = {
  deployment_id = "string", base_model = "string", snapshot_identity = "string",
  incremental_snapshot_metadata = "table", reset_prompt_cache = "boolean", source_url = "string",
  timeout_seconds = "number", poll_interval_s = "number", quiet = "boolean",
}

function M:_hotload_headers(a)
  local h = {["fireworks-model"] = a.base_model,
    ["fireworks-deployment"] = self:_name(a.deployment_id)}
  if a.source_url then h["x-fireworks-hot-load-source-url"] = a.source_url end
  return h
end

local function require_fields(a, who, names)
  for _, n in ipairs(names) do
    if a[n] == nil or a[n] == "" then raise("invalid_argument", who .. ": field '" .. n ..
      "' is required") end
  end
end

function M:hotload(a)
  options.check(a, hotload_spec, "hotload")
  require_fields(a, "hotload", {"deployment_id", "base_model", "snapshot_identity"})
  local body = {identity = a.snapshot_identity}
  -- Sent as given, true or false, unless this server rejected the field before (as the SDK).
  if self._reset_prompt_cache_supported ~= false then
    body.reset_prompt_cache = a.reset_prompt_cache ~= false
  end
  body.incremental_snapshot_metadata = a.incremental_snapshot_metadata
  local req = {method = "POST", plane = "hotload", path = "/hot_load/v1/models/hot_load",
    body = body,
    headers = self:_hotload_headers(a), accept = {400},
    what = "hotload " .. a.snapshot_identity .. " onto " .. self:_name(a.deployment_id)}
  local r = self.fw:request(req)
  if r.status == 400 then
    local msg = r.body and r.body.error and r.body.error.message or r.text or ""
    if body.reset_prompt_cache ~= nil and msg:find("reset_prompt_cache", 1, true) and
      msg:find("not permitted", 1, true) then
      body.reset_prompt_cache = nil
      self._reset_prompt_cache_supported = false
      req.accept = nil
      r = self.fw:request(req)
    else
      req.accept = nil
      req.retries = 1
      self.fw:request(req)  -- raises the 400 with its message
    end
  end
  return r.body
end

function M:hotload_check_status(a)
  options.check(a, hotload_spec, "hotload_check_status")
  require_fields(a, "hotload_check_status", {"deployment_id", "base_model"})
  local r = self.fw:request{plane = "hotload", path = "/hot_load/v1/models/hot_load",
    headers = self:_hotload_headers(a), what = "hotload status of " .. self:_name(a.deployment_id)}
  return r.body
end

local function replica_has(rep, target)
  if rep.readiness and rep.current_snapshot_identity == target then return true end
  for _, ad in ipairs(rep.loaded_adapters or {}) do
    if ad.identity == target and (ad.status == nil or ad.status == "loaded") then return true end
  end
  return false
end

function M:hotload_and_wait(a)
  options.check(a, hotload_spec, "hotload_and_wait")
  require_fields(a, "hotload_and_wait", {"deployment_id", "base_model", "snapshot_identity"})
  local timeout = a.timeout_seconds or 400
  local interval = a.poll_interval_s or self.fw:poll_interval("hotload")
  local target = a.snapshot_identity
  local p = progress.new("hotload " .. a.deployment_id, {quiet = self.fw:_quiet(a)})
  self.last_hotload_error_message = nil
  local ok, err = pcall(self.hotload, self, a)
  if not ok then
    self.last_hotload_error_message = type(err) == "table" and tostring(err.message) or
      tostring(err)
    error(err, 0)
  end
  while true do
    -- A status check that fails transiently is polled again, as the SDK's wait_for_hotload.
    local polled, st = pcall(self.hotload_check_status, self, a)
    local stage = "no replica"
    if not polled then
      if type(st) ~= "table" or not st.retryable then error(st, 0) end
      stage, st = "status check failed: " .. tostring(st.message), {}
    end
    for _, rep in ipairs(st.replicas or {}) do
      if replica_has(rep, target) then
        p:finish("loaded " .. target)
        return true
      end
      local ls = rep.loading_state or {}
      stage = (ls.stage or "?") .. " " .. (ls.target_snapshot_identity or "")
      if ls.stage == "error" and ls.target_snapshot_identity == target then
        p:finish("error")
        self.last_hotload_error_message = "hotload of " .. target .. " onto " ..
          self:_name(a.deployment_id) .. " failed: " .. tostring(ls.message or "stage error") ..
          " (current snapshot: " ..
          tostring(rep.current_snapshot_identity or "none") .. "); hotload a full base snapshot"
        raise("hotload_failed", self.last_hotload_error_message)
      end
    end
    p:update(stage)
    if p:elapsed() + interval > timeout then
      p:finish("timed out")
      self.last_hotload_error_message = string.format(
        "hotload_and_wait: %s not loaded on %s after %.0f s (last: %s)",
        target, self:_name(a.deployment_id), p:elapsed(), stage)
      raise("timeout", self.last_hotload_error_message, {retryable = true})
    end
    flare.sleep(interval)
  end
end

-- The snapshot the first replica serves, or nil when no replica is up.
function M:_replica_identity(id, base_model)
  local st = self:hotload_check_status{deployment_id = id, base_model = base_model}
  local rep = (st.replicas or {})[1]
  if not rep then return nil end
  return rep.current_snapshot_identity or rep.identity
end

function M:reattach_trainer(deployment, opts)
  opts = options.check(opts, {base_model = "string", trainer_job_name = "string",
    timeout_s = "number",
    poll_interval_s = "number", quiet = "boolean"}, "reattach_trainer")
  require_fields(opts, "reattach_trainer", {"base_model", "trainer_job_name", "timeout_s"})
  local info = deployment
  if type(deployment) == "string" then
    info = self:get(deployment)
    if not info then
      raise("not_found", "reattach_trainer: deployment " .. self:_name(deployment) ..
        " does not exist", {status = 404})
    end
  elseif type(deployment) ~= "table" or not deployment.deployment_id then
    raise("invalid_argument",
      "reattach_trainer: deployment must be a deployment id or a DeploymentInfo")
  end
  local id, job = info.deployment_id, opts.trainer_job_name
  if not job:find("/", 1, true) then job = "accounts/" .. self.fw.account_id ..
    "/rlorTrainerJobs/" .. job end
  if info.hot_load_trainer_job == job then return info end
  local before = self:_replica_identity(id, opts.base_model)
  local updated = self:update(id, {hotLoadTrainerJob = job}, "hot_load_trainer_job")
  local interval = opts.poll_interval_s or self.fw:poll_interval("hotload")
  local p = progress.new("reattach " .. id, {quiet = self.fw:_quiet(opts)})
  local pod_gone = before == nil
  while true do
    local now = self:_replica_identity(id, opts.base_model)
    -- Settled once a replica is up after the old one went, or serves another snapshot.
    if now ~= nil and (pod_gone or now ~= before) then
      p:finish("attached to " .. job)
      return updated
    end
    if now == nil then pod_gone = true end
    p:update(now == nil and "waiting for a fresh replica" or ("still serving " .. tostring(now)))
    if p:elapsed() + interval > opts.timeout_s then
      p:finish("timed out")
      raise("timeout", string.format("reattach_trainer: deployment %s did not come up with a " ..
        "fresh replica within %.0f s (it served %s before)", self:_name(id), opts.timeout_s,
        tostring(before)), {retryable = true})
    end
    flare.sleep(interval)
  end
end

function M:warmup(model, opts)
  opts = options.check(opts, {max_retries = "integer", retry_interval_s = "number"}, "warmup")
  if type(model) == "table" then model = model.inference_model end
  if type(model) ~= "string" then raise("invalid_argument",
    "warmup: model must be a string or a DeploymentInfo") end
  local tries, interval = opts.max_retries or 30, opts.retry_interval_s or
    self.fw:poll_interval("warmup")
  local last
  for attempt = 1, tries do
    local ok, r = pcall(self.fw.request, self.fw, {method = "POST", plane = "inference",
      path = "/inference/v1/completions", retries = 1, timeout_s = 30,
      body = {model = model, prompt = {1, 2}, max_tokens = 4, temperature = 0},
        what = "warm up " .. model})
    if ok then return true end
    last = r
    if type(r) == "table" and r.retryable == false and r.status ~= 404 then error(r, 0) end
    if attempt < tries then flare.sleep(interval) end
  end
  raise("warmup_failed", "warmup of " .. model .. " failed after " .. tries .. " attempts: " ..
    tostring(last),
    {retryable = true})
end

return M
