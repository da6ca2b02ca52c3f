-- flare.fireworks.deployment_config: DeploymentConfig as in the Fireworks SDK.
--   Fields (defaults): deployment_id (required), base_model (required),
--   description ("Fireworks training deployment"), deployment_shape (nil),
--   expected_deployment_shape (nil; when set, deployment_shape must equal it), region (nil),
--   min_replica_count (0), max_replica_count (1), accelerator_type ("NVIDIA_H200_141GB";
--   not sent when deployment_shape is set), hot_load_bucket_type ("FW_HOSTED"; false leaves
--   it unset, as the SDK's None, and the server picks),
--   hot_load_trainer_job (nil; "accounts/<acct>/rlorTrainerJobs/<job>" or a job id),
--   enable_hot_load (true), skip_shape_validation (false), disable_speculative_decoding (false),
--   extra_args (nil; list of strings, items with spaces split into words),
--   extra_values (nil; table of string = string), annotations (nil; table), for_training (false).
--   validate(config) checks everything before any request; body(cfg, account) and
--   query(cfg) give the create request.
--   from_training_profile{deployment_id =, base_model =, profile =, <other fields>} -> a config
--   pinned to the profile's shape (profile.deployment_shape or .deployment_shape_version):
--   deployment_shape and expected_deployment_shape both set to it, as the SDK's classmethod.
local options = require("flare.fireworks.options")

local M = {}

M.spec = {
  deployment_id = "string", base_model = "string", description = "string",
    deployment_shape = "string", expected_deployment_shape = "string",
  region = "string", min_replica_count = "integer", max_replica_count = "integer",
  accelerator_type = "string", hot_load_bucket_type = "string|boolean",
  hot_load_trainer_job = "string",
  enable_hot_load = "boolean", skip_shape_validation = "boolean",
    disable_speculative_decoding = "boolean",
  extra_args = "table", extra_values = "table", annotations = "table", for_training = "boolean",
}

M.defaults = {
  description = "Fireworks training deployment", min_replica_count = 0, max_replica_count = 1,
  accelerator_type = "NVIDIA_H200_141GB", hot_load_bucket_type = "FW_HOSTED",
    enable_hot_load = true,
  skip_shape_validation = false, disable_speculative_decoding = false, for_training = false,
}

local function bad(message)
  options.raise("invalid_argument", "DeploymentConfig: " .. message)
end

function M.validate(config)
  if type(config) ~= "table" then bad("the config must be a table, got " .. type(config)) end
  options.check(config, M.spec, "DeploymentConfig")
  local cfg = {}
  for k, v in pairs(M.defaults) do cfg[k] = v end
  for k, v in pairs(config) do cfg[k] = v end
  if not cfg.deployment_id or cfg.deployment_id == "" then
    bad("field 'deployment_id' is required") end
  if not cfg.deployment_id:match("^[a-z0-9][a-z0-9-]*$") or #cfg.deployment_id > 63 then
    bad("deployment_id '" .. cfg.deployment_id .. "' must be 1-63 lowercase letters, digits or '-'")
  end
  if not cfg.base_model or cfg.base_model == "" then bad("field 'base_model' is required") end
  if cfg.min_replica_count < 0 then bad("min_replica_count must be >= 0, got " ..
    cfg.min_replica_count) end
  if cfg.max_replica_count < 0 then bad("max_replica_count must be >= 0, got " ..
    cfg.max_replica_count) end
  if cfg.min_replica_count > cfg.max_replica_count then
    bad("min_replica_count (" .. cfg.min_replica_count .. ") must not exceed max_replica_count (" ..
      cfg.max_replica_count .. ")")
  end
  if cfg.hot_load_bucket_type == true then
    bad("hot_load_bucket_type must be a string, or false to leave it unset")
  end
  local expected = (cfg.expected_deployment_shape or ""):match("^%s*(.-)%s*$")
  if expected ~= "" and (cfg.deployment_shape or ""):match("^%s*(.-)%s*$") ~= expected then
    bad("deployment_shape does not match the RFT deployment shape resolved from the training " ..
      "profile: expected '" .. expected .. "', got '" .. tostring(cfg.deployment_shape or "") ..
      "'; use DeploymentConfig.from_training_profile or pass the profile's " ..
      "deployment_shape_version exactly")
  end
  if config.accelerator_type and config.deployment_shape then
    bad("set either deployment_shape or accelerator_type, not both (the shape owns the hardware)")
  end
  if cfg.extra_args then
    for i, a in ipairs(cfg.extra_args) do
      if type(a) ~= "string" then bad("extra_args[" .. i .. "] must be a string, got " ..
        type(a)) end
    end
  end
  if cfg.extra_values then
    for k, v in pairs(cfg.extra_values) do
      if type(k) ~= "string" or type(v) ~= "string" then
        bad("extra_values must map strings to strings") end
    end
  end
  return cfg
end

function M.query(cfg)
  local q = "?deploymentId=" .. cfg.deployment_id
  if cfg.skip_shape_validation then q = q .. "&skipShapeValidation=true" end
  if cfg.disable_speculative_decoding then q = q .. "&disableSpeculativeDecoding=true" end
  return q
end

function M.body(cfg, account)
  local b = {
    baseModel = cfg.base_model, description = cfg.description,
      minReplicaCount = cfg.min_replica_count,
    maxReplicaCount = cfg.max_replica_count, enableHotLoad = cfg.enable_hot_load,
      forTraining = cfg.for_training,
    hotLoadBucketType = cfg.hot_load_bucket_type or nil,
  }
  if cfg.region then b.placement = {region = cfg.region} end
  if cfg.hot_load_trainer_job then
    local job = cfg.hot_load_trainer_job
    if not job:find("/", 1, true) then job = "accounts/" .. account ..
      "/rlorTrainerJobs/" .. job end
    b.hotLoadTrainerJob = job
  end
  if cfg.deployment_shape then
    b.deploymentShape = cfg.deployment_shape
  else
    b.acceleratorType = cfg.accelerator_type
  end
  if cfg.extra_args then
    local args = {}
    for _, a in ipairs(cfg.extra_args) do
      for word in a:gmatch("%S+") do args[#args + 1] = word end
    end
    b.extraArgs = args
  end
  if cfg.extra_values then b.extraValues = cfg.extra_values end
  if cfg.annotations then b.annotations = cfg.annotations end
  return b
end

function M.from_training_profile(args)
  if type(args) ~= "table" then bad("from_training_profile: arguments must be a table") end
  local profile = args.profile
  if type(profile) ~= "table" then bad("from_training_profile: 'profile' (a table) is required") end
  local shape = profile.deployment_shape or profile.deployment_shape_version
  if type(shape) ~= "string" or shape == "" then
    bad("from_training_profile: the training profile does not include a " ..
      "deployment_shape_version")
  end
  local cfg = {}
  for k, v in pairs(args) do
    if k ~= "profile" then cfg[k] = v end
  end
  cfg.deployment_shape, cfg.expected_deployment_shape = shape, shape
  return cfg
end

return M
