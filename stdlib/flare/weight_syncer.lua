-- flare.weight_syncer{...}: keeps a deployment serving the trainer's latest weights.
--   local syncer = flare.weight_syncer{policy_client = trainer, deploy_mgr = fw.deployments,
--       deployment_id = id, base_model = "...", hotload_timeout = 600,
--       first_checkpoint_type = "base",
--       compression_format = ("arc_v2" on the cloud, flare's own format on the emulator, also
--       on a `flare serve` reached through FIREWORKS_BASE_URL),
--       warmup_after_hotload = true, warmup_max_retries = 10, reset_prompt_cache = true,
--       lora_rank = 0,
--       poll_interval_s = 5, warmup_retry_interval_s = 10, quiet = nil}
--   syncer:save_and_hotload(name [, checkpoint_type])
--                                  -> snapshot name "<name>-<8 hex session id>", or raises
--   syncer:save_only(name [, checkpoint_type])         -> snapshot name (saved, not hotloaded)
--   syncer:hotload(snapshot, checkpoint_type)          -> true or false
--   syncer:check_deployment_state()                    -> the snapshot served, or nil
--   syncer:wait_for_hotload_ready{timeout_s = 300, poll_interval_s = 5}
--                                                      -> true once a replica is up
--   syncer:reset_delta_chain()                         next save is a full base again
--   syncer.last_timing = {save_s, hotload_s, warmup_s, total_s}; syncer.session_id;
--   syncer.base_identity
-- The chain: the first save is a base; later saves are deltas against the last base that was
-- hotloaded successfully (named in incremental_snapshot_metadata.previous_snapshot_identity).
-- lora_rank > 0 makes every save a base. If the deployment serves another session's snapshot,
-- this session's first hotload is a base.
local options = require("flare.fireworks.options")

local Syncer = {}
Syncer.__index = Syncer

local spec = {
  policy_client = "table", deploy_mgr = "table", deployment_id = "string", base_model = "string",
  hotload_timeout = "number", first_checkpoint_type = "string", compression_format = "string",
  warmup_after_hotload = "boolean", warmup_max_retries = "integer", reset_prompt_cache = "boolean",
  lora_rank = "integer", poll_interval_s = "number", warmup_retry_interval_s = "number",
    quiet = "boolean",
}

local EMULATOR_FORMAT = "flare-delta-v1"

local function check_type(kind, who)
  if kind ~= nil and kind ~= "base" and kind ~= "delta" then
    options.raise("invalid_argument",
      who .. ": checkpoint_type must be \"base\" or \"delta\", got " .. tostring(kind))
  end
end

local function new(opts)
  options.check(opts, spec, "weight_syncer")
  for _, k in ipairs({"policy_client", "deploy_mgr", "deployment_id", "base_model"}) do
    if opts[k] == nil then options.raise("invalid_argument",
      "weight_syncer: '" .. k .. "' is required") end
  end
  check_type(opts.first_checkpoint_type, "weight_syncer")
  if opts.lora_rank and opts.lora_rank < 0 then options.raise("invalid_argument",
    "weight_syncer: lora_rank must be >= 0") end
  local fw = opts.deploy_mgr.fw
  local default_format = fw and (fw.delta_format or (fw.backend == "emulator" and
    EMULATOR_FORMAT)) or "arc_v2"
  return setmetatable({
    policy_client = opts.policy_client, deploy_mgr = opts.deploy_mgr,
      deployment_id = opts.deployment_id,
    base_model = opts.base_model, hotload_timeout = opts.hotload_timeout or 600,
    first_checkpoint_type = opts.first_checkpoint_type or "base",
    compression_format = opts.compression_format or default_format,
    warmup_after_hotload = opts.warmup_after_hotload ~= false,
      warmup_max_retries = opts.warmup_max_retries or 10,
    reset_prompt_cache = opts.reset_prompt_cache ~= false, lora_rank = opts.lora_rank or 0,
    poll_interval_s = opts.poll_interval_s or 5, warmup_retry_interval_s =
      opts.warmup_retry_interval_s or 10,
    quiet = opts.quiet, session_id = options.random_hex(8), base_identity = nil, first_done = false,
    last_timing = {save_s = 0, hotload_s = 0, warmup_s = 0, total_s = 0},
  }, Syncer)
end

function Syncer:__tostring()
  return string.format("weight_syncer(%s, session %s, base %s)", self.deployment_id,
    self.session_id,
    tostring(self.base_identity))
end

function Syncer:_owns(snapshot)
  return type(snapshot) == "string" and snapshot:sub(-9) == "-" .. self.session_id
end

function Syncer:check_deployment_state()
  local st = self.deploy_mgr:hotload_check_status{deployment_id = self.deployment_id,
    base_model = self.base_model}
  for _, rep in ipairs(st.replicas or {}) do
    if rep.current_snapshot_identity and rep.current_snapshot_identity ~= "" then
      return rep.current_snapshot_identity
    end
  end
  return nil
end

function Syncer:wait_for_hotload_ready(opts)
  opts = options.check(opts, {timeout_s = "number", poll_interval_s = "number"},
    "wait_for_hotload_ready")
  local timeout, interval = opts.timeout_s or 300, opts.poll_interval_s or 5
  local started = flare.clock()
  while true do
    local st = self.deploy_mgr:hotload_check_status{deployment_id = self.deployment_id,
      base_model = self.base_model}
    if st.replicas and #st.replicas > 0 then return true end
    if flare.clock() - started + interval > timeout then
      options.raise("timeout",
        string.format("wait_for_hotload_ready: no replica of %s is up after %.0f s",
        self.deployment_id, flare.clock() - started), {retryable = true})
    end
    flare.sleep(interval)
  end
end

function Syncer:reset_delta_chain()
  self.base_identity = nil
  self.first_done = false
end

-- The checkpoint type of the next save.
function Syncer:_next_type(requested)
  if self.lora_rank > 0 then return "base" end
  if not self.first_done then
    local kind = requested or self.first_checkpoint_type
    if kind == "delta" then
      -- A delta is only valid against a base of this session that the deployment serves.
      local serving = self:check_deployment_state()
      if not (self:_owns(serving) and self.base_identity) then kind = "base" end
    end
    return kind
  end
  if requested == "base" or not self.base_identity then return "base" end
  return "delta"
end

function Syncer:_save(name, kind)
  if type(name) ~= "string" or name == "" then options.raise("invalid_argument",
    "save: name must be a non-empty string") end
  local snapshot = name .. "-" .. self.session_id
  local t0 = flare.clock()
  self.policy_client:save_weights_for_sampler(snapshot, {checkpoint_type = kind})
  self.last_timing.save_s = flare.clock() - t0
  return snapshot
end

function Syncer:save_only(name, checkpoint_type)
  check_type(checkpoint_type, "save_only")
  local kind = self:_next_type(checkpoint_type)
  local snapshot = self:_save(name, kind)
  if kind == "base" then
    -- The trainer's deltas now refer to this base, which the deployment does not serve yet.
    self.base_identity = nil
    self.first_done = false
  end
  return snapshot
end

function Syncer:hotload(snapshot, checkpoint_type)
  check_type(checkpoint_type, "hotload")
  local kind = checkpoint_type or "base"
  local meta
  if kind == "delta" then
    if not self.base_identity then return false end
    meta = {previous_snapshot_identity = self.base_identity,
      compression_format = self.compression_format,
      checksum_format = "alder32"}
  end
  local t0 = flare.clock()
  local ok, err = pcall(self.deploy_mgr.hotload_and_wait, self.deploy_mgr, {
    deployment_id = self.deployment_id, base_model = self.base_model, snapshot_identity = snapshot,
    incremental_snapshot_metadata = meta, timeout_seconds = self.hotload_timeout,
    reset_prompt_cache = self.reset_prompt_cache, poll_interval_s = self.poll_interval_s,
      quiet = self.quiet})
  self.last_timing.hotload_s = flare.clock() - t0
  if not ok then
    if type(err) == "table" and err.code == "interrupted" then error(err, 0) end
    self.last_error = err
    if kind == "base" then self.base_identity = nil end
    return false
  end
  if kind == "base" then self.base_identity = snapshot end
  self.first_done = true
  return true
end

function Syncer:save_and_hotload(name, checkpoint_type)
  check_type(checkpoint_type, "save_and_hotload")
  local t0 = flare.clock()
  self.last_timing = {save_s = 0, hotload_s = 0, warmup_s = 0, total_s = 0}
  local kind = self:_next_type(checkpoint_type)
  local snapshot = self:_save(name, kind)
  if not self:hotload(snapshot, kind) then
    self.last_timing.total_s = flare.clock() - t0
    local why = self.last_error
    options.raise(type(why) == "table" and why.code or "hotload_failed",
      "save_and_hotload: hotload of " .. kind ..
      " snapshot " .. snapshot .. " onto " .. self.deployment_id .. " failed: " .. tostring(why) ..
      (kind == "delta" and "" or "; the next save will be a base again"),
      {status = type(why) == "table" and why.status or nil,
        retryable = type(why) == "table" and why.retryable or false})
  end
  if self.warmup_after_hotload then
    local tw = flare.clock()
    self.deploy_mgr:warmup(self.deploy_mgr:_name(self.deployment_id),
      {max_retries = self.warmup_max_retries, retry_interval_s = self.warmup_retry_interval_s})
    self.last_timing.warmup_s = flare.clock() - tw
  end
  self.last_timing.total_s = flare.clock() - t0
  return snapshot
end

return new
