-- flare.fireworks.engines: engines serving LoRA addons (fw.engines).
-- An engine is a deployment created with enable_addons = true: it serves its base model and any
-- number of fine-tuned deployments (LoRA addons on that base) at once, each addressed by name.
--   eng:create(config, {wait = true, timeout_s =, poll_interval_s =})  -> DeploymentInfo
--       config is a DeploymentConfig (flare.fireworks.deployment_config) with enable_addons
--       forced to true; inactive_timeout_s sets the idle time after which it deactivates
--       (scale_to_zero_window_s), min_replica_count defaults to 0 so that it can.
--   eng:deploy{engine = info|id, name = "<addon>", source = <source>, wait = true,
--       timeout_s = 60, poll_interval_s =}  -> Deployed
--       source: {trainer = t, snapshot = "<sampler snapshot>"} (a LoRA trainer's
--       save_weights_for_sampler), {trainer_job = "<job name or id>", snapshot = ...}, or the
--       path of a PEFT folder (adapter_config.json + adapter_model.safetensors), uploaded.
--       The LoRA model "<name>" is created when it does not exist yet.
--   eng:undeploy(deployed)     unloads one addon; the engine's other deployments keep serving
--   eng:list(engine)           -> {Deployed, ...}: the base model first, then the addons
--   eng:get(deployed_id)       -> Deployed or nil
--   eng:deactivate(engine), eng:reactivate(engine)   the engine stops / comes back with the same
--       set of deployments (Deactivated / Reactivating -> Deployed)
--   eng:wait_for(deployed | engine, status, {timeout_s = 60, poll_interval_s =})  -> Deployed or
--       the list; for an engine every deployment must reach `status`
--   eng:delete(engine)         deletes the engine with all its deployments
--   eng:delete_model(name)     deletes an (undeployed) LoRA model
--   Deployed = {id, name, display_name, model, engine, status, source, created, message}
--       status: "Pending" | "Deploying" | "Deployed" | "Deactivated" | "Reactivating" | "Failed"
--       (message says why) | "Undeploying"; source: "base model", "<job> @ <snapshot>" or
--       "uploaded"
--   eng.addon_model(fw, name, engine_model) -> "accounts/<a>/models/<name>#<engine>" (sampler)
local options = require("flare.fireworks.options")
local config_mod = require("flare.fireworks.deployment_config")

local M = {}
M.__index = M

local raise = options.raise

local STATUS = {PENDING = "Pending", DEPLOYING = "Deploying", DEPLOYED = "Deployed",
  DEACTIVATED = "Deactivated", REACTIVATING = "Reactivating", FAILED = "Failed",
  UNDEPLOYING = "Undeploying"}
M.STATUSES = {"Pending", "Deploying", "Deployed", "Deactivated", "Reactivating", "Failed"}

function M.new(fw)
  return setmetatable({fw = fw}, M)
end

function M:__tostring()
  return "Engines(account " .. self.fw.account_id .. ")"
end

local function check_name(v, field, who)
  if type(v) ~= "string" or not v:match("^[a-z0-9][a-z0-9-]*$") or #v > 63 then
    raise("invalid_argument", who .. ": " .. field ..
      " must be 1-63 lowercase letters, digits or '-', got " .. tostring(v))
  end
  return v
end

local function engine_id(engine, who)
  if type(engine) == "table" then engine = engine.deployment_id end
  return check_name(engine, "engine", who)
end

function M.addon_model(fw, name, engine_model)
  if name:find("#", 1, true) or name:find("/", 1, true) then return name end
  return "accounts/" .. fw.account_id .. "/models/" .. name .. "#" .. engine_model
end

function M:_acct() return "/v1/accounts/" .. self.fw.account_id end

function M:_deployed(b)
  local src = b.source or {}
  local source = src.baseModel and "base model" or src.trainerJob and
    (src.trainerJob:match("[^/]+$") .. " @ " .. tostring(src.snapshot)) or "uploaded"
  return {id = b.name:match("[^/]+$"), name = b.name, display_name = b.displayName,
    model = b.model, engine = b.deployment and b.deployment:match("[^/]+$"),
    status = STATUS[b.state] or b.state, source = source, created = b.createTime,
    message = (b.status and b.status.message ~= "") and b.status.message or nil}
end

function M:create(config, opts)
  if type(config) ~= "table" then raise("invalid_argument", "create: config must be a table") end
  opts = options.check(opts, {wait = "boolean", timeout_s = "number", poll_interval_s = "number",
    quiet = "boolean"}, "create")
  local cfg = {}
  for k, v in pairs(config) do if k ~= "inactive_timeout_s" then cfg[k] = v end end
  if config.inactive_timeout_s ~= nil then
    if type(config.inactive_timeout_s) ~= "number" or config.inactive_timeout_s <= 0 then
      raise("invalid_argument", "create: inactive_timeout_s must be a number > 0")
    end
    cfg.scale_to_zero_window_s = config.inactive_timeout_s
  end
  cfg.enable_addons = true
  config_mod.validate(cfg)
  local info = self.fw.deployments:create_or_get(cfg, {quiet = opts.quiet})
  if opts.wait == false then return info end
  return self.fw.deployments:wait_for_ready(info.deployment_id, {timeout_s = opts.timeout_s,
    poll_interval_s = opts.poll_interval_s, quiet = opts.quiet})
end

-- PUT each file of the folder to the URL getUploadEndpoint gives, then validateUpload.
function M:_upload(model_path, folder)
  local files, sizes = {"adapter_config.json", "adapter_model.safetensors"}, {}
  local data = {}
  for _, f in ipairs(files) do
    local bytes, err = flare.fs.read_file(folder .. "/" .. f)
    if not bytes then raise("invalid_argument", "deploy: source folder " .. folder ..
      " has no readable " .. f .. " (" .. tostring(err) .. ")") end
    data[f], sizes[f] = bytes, #bytes
  end
  local r = self.fw:request{method = "POST", path = model_path .. ":getUploadEndpoint",
    body = {filenameToSize = sizes}, what = "upload endpoint of " .. model_path}
  for _, f in ipairs(files) do
    local url = r.body.filenameToSignedUrls[f]
    self.fw:request{method = "PUT", path = url:match("^%a+://[^/]+(/.*)$") or url, body = data[f],
      what = "upload " .. f}
  end
  self.fw:request{method = "POST", path = model_path .. ":validateUpload", body = {},
    what = "validate upload of " .. model_path}
end

function M:_ensure_model(name, base_model, source)
  local path = self:_acct() .. "/models/" .. name
  local r = self.fw:request{path = path, accept = {404}, what = "get model " .. name}
  if r.status == 200 then return end
  local body = {modelId = name, model = {kind = "HF_PEFT_ADDON", displayName = name,
    peftDetails = {baseModel = base_model}}}
  if type(source) == "table" then
    local job = source.trainer and source.trainer.name or source.trainer_job
    if type(job) ~= "string" then raise("invalid_argument",
      "deploy: source must be {trainer = t, snapshot = ...}, {trainer_job =, snapshot =} " ..
      "or a PEFT folder path") end
    if not job:find("/", 1, true) then
      job = "accounts/" .. self.fw.account_id .. "/rlorTrainerJobs/" .. job end
    if type(source.snapshot) ~= "string" then raise("invalid_argument",
      "deploy: source.snapshot (the sampler snapshot's name) is required") end
    body.source = {trainerJob = job, snapshot = source.snapshot}
  elseif type(source) ~= "string" then
    raise("invalid_argument", "deploy: source is required (a trainer snapshot or a PEFT folder)")
  end
  self.fw:request{method = "POST", path = self:_acct() .. "/models", body = body,
    what = "create model " .. name}
  if type(source) == "string" then self:_upload(path, source) end
end

function M:deploy(args)
  args = options.check(args, {engine = "table|string", name = "string", source = "table|string",
    wait = "boolean", timeout_s = "number", poll_interval_s = "number"}, "deploy")
  local eng = engine_id(args.engine, "deploy")
  local name = check_name(args.name, "name", "deploy")
  local info = self.fw.deployments:get(eng)
  if not info then raise("not_found", "deploy: engine " .. eng .. " not found") end
  self:_ensure_model(name, info.base_model, args.source)
  local r = self.fw:request{method = "POST", path = self:_acct() .. "/deployedModels",
    body = {model = "accounts/" .. self.fw.account_id .. "/models/" .. name,
      deployment = "accounts/" .. self.fw.account_id .. "/deployments/" .. eng},
    what = "deploy " .. name .. " on " .. eng}
  local d = self:_deployed(r.body)
  if args.wait == false then return d end
  return self:wait_for(d, "Deployed", args)
end

function M:get(id)
  if type(id) == "table" then id = id.id end
  local r = self.fw:request{path = self:_acct() .. "/deployedModels/" .. tostring(id),
    accept = {404}, what = "get deployed model " .. tostring(id)}
  if r.status == 404 then return nil end
  return self:_deployed(r.body)
end

function M:list(engine)
  local eng = engine_id(engine, "list")
  local filter = "deployment%3D%22accounts/" .. self.fw.account_id .. "/deployments/" .. eng ..
    "%22"
  local r = self.fw:request{path = self:_acct() .. "/deployedModels?filter=" .. filter,
    what = "list deployments of " .. eng}
  local out = {}
  for _, b in ipairs(r.body.deployedModels or {}) do out[#out + 1] = self:_deployed(b) end
  return out
end

function M:undeploy(deployed)
  local id = type(deployed) == "table" and deployed.id or deployed
  if type(id) ~= "string" then raise("invalid_argument", "undeploy: give a Deployed or its id") end
  self.fw:request{method = "DELETE", path = self:_acct() .. "/deployedModels/" .. id,
    what = "undeploy " .. id}
  return true
end

function M:deactivate(engine)
  self.fw.deployments:update(engine_id(engine, "deactivate"),
    {min_replica_count = 0, max_replica_count = 0})
  return true
end

function M:reactivate(engine)
  self.fw.deployments:update(engine_id(engine, "reactivate"),
    {min_replica_count = 1, max_replica_count = 1})
  return true
end

function M:wait_for(target, status, opts)
  opts = opts or {}
  local ok = false
  for _, s in ipairs(M.STATUSES) do ok = ok or s == status end
  if not ok then raise("invalid_argument", "wait_for: status must be one of " ..
    table.concat(M.STATUSES, ", ") .. ", got " .. tostring(status)) end
  local timeout = opts.timeout_s or 60
  local interval = opts.poll_interval_s or self.fw:poll_interval("deployment")
  local t0 = flare.clock()
  local is_engine = type(target) == "string" or (type(target) == "table" and target.deployment_id)
  while true do
    local now, done, why
    if is_engine then
      now = self:list(target)
      done = #now > 0
      for _, d in ipairs(now) do
        if d.status ~= status then done, why = false, d.name .. " is " .. d.status end
        if d.status == "Failed" and status ~= "Failed" then
          raise("failed_precondition", "wait_for: " .. d.name .. " failed: " ..
            tostring(d.message))
        end
      end
    else
      now = self:get(target)
      if not now then raise("not_found", "wait_for: deployed model " .. target.id .. " is gone") end
      done, why = now.status == status, now.name .. " is " .. now.status
      if now.status == "Failed" and status ~= "Failed" then
        raise("failed_precondition", "wait_for: " .. now.name .. " failed: " ..
          tostring(now.message))
      end
    end
    if done then return now end
    local elapsed = flare.clock() - t0
    if elapsed + interval > timeout then
      raise("timeout", string.format("wait_for: %s after %.0f s (waiting for %s)", why or "",
        elapsed, status), {retryable = true})
    end
    flare.sleep(interval)
  end
end

function M:delete(engine)
  return self.fw.deployments:delete(engine_id(engine, "delete"), {poll_interval_s = 0.05})
end

function M:delete_model(name)
  check_name(name, "name", "delete_model")
  self.fw:request{method = "DELETE", path = self:_acct() .. "/models/" .. name, accept = {404},
    what = "delete model " .. name}
  return true
end

return M
