-- flare.weight_syncer{...}: keeps a deployment serving the trainer's latest weights (the SDK's
-- WeightSyncer).
--   local syncer = flare.weight_syncer{policy_client = trainer (required),
--       deploy_mgr = fw.deployments, deployment_id = id, base_model = "...",
--       hotload_timeout = 600, first_checkpoint_type = "base",
--       compression_format = ("arc_v2" on the cloud, flare's own format on the emulator, also
--       on a `flare serve` reached through FIREWORKS_BASE_URL),
--       warmup_after_hotload = true, warmup_max_retries = 10, reset_prompt_cache = true,
--       lora_rank = 0, poll_interval_s = (the connection's hotload poll),
--       warmup_retry_interval_s = (its warmup retry), quiet = nil}
--   Without deploy_mgr or deployment_id the syncer only saves (the SDK's save-only mode).
--   syncer:save_and_hotload(name [, checkpoint_type])
--       -> snapshot name "<name>-<8 hex session id>", or raises
--   syncer:save_only(name [, checkpoint_type])
--       -> snapshot name (saved, not hotloaded), or nil when the save failed (syncer.last_error)
--   syncer:hotload(snapshot, checkpoint_type)  -> true, or false (also in save-only mode)
--   syncer:check_deployment_state()            -> the snapshot the deployment serves, or nil
--   syncer:wait_for_hotload_ready{timeout_s = 300, poll_interval_s = }
--       -> true once a replica is up
--   syncer:reset_delta_chain()                 next save is a full base again
--   syncer.last_timing = {save_time_s, hotload_time_s, warmup_time_s, total_time_s} (the SDK's
--   keys) of the last call; syncer.session_id; syncer.base_identity
-- checkpoint_type is "base", "delta" or "merged_base" (a LoRA folded into full weights, loaded as
-- a base).
-- The chain, as the SDK's: the first save is a base; each later save is a delta made by the
-- trainer against its previous sampler snapshot, and hotloaded with
-- incremental_snapshot_metadata.previous_snapshot_identity = base_identity, the snapshot
-- hotloaded last. flare saves a base instead of a delta the deployment would refuse: when the
-- trainer's previous snapshot is not the one served (a save that was never hotloaded, a failed
-- hotload, or another session's snapshot on the deployment). lora_rank > 0 makes every save a
-- base. A hotload warms the deployment up afterwards (warmup_after_hotload); a failed warmup is
-- a warning (syncer.last_warmup_error), as in the SDK.
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
local full_types = {base = true, merged_base = true}

local function check_type(kind, who)
  if kind ~= nil and not full_types[kind] and kind ~= "delta" then
    options.raise("invalid_argument", who ..
      ": checkpoint_type must be \"base\", \"delta\" or \"merged_base\", got " ..
      tostring(kind))
  end
end

local function no_timing()
  return {save_time_s = 0, hotload_time_s = 0, warmup_time_s = 0, total_time_s = 0}
end

local function new(opts)
  options.check(opts, spec, "flare.weight_syncer")
  if opts.policy_client == nil then
    options.raise("invalid_argument", "weight_syncer: 'policy_client' is required")
  end
  check_type(opts.first_checkpoint_type, "weight_syncer")
  if opts.lora_rank and opts.lora_rank < 0 then
    options.raise("invalid_argument", "weight_syncer: lora_rank must be >= 0")
  end
  local fw = opts.deploy_mgr and opts.deploy_mgr.fw or opts.policy_client.fw
  local default_format = "arc_v2"
  if fw then
    default_format = fw.delta_format or (fw.backend == "emulator" and EMULATOR_FORMAT) or "arc_v2"
  end
  local function poll(kind)
    if fw and fw.poll_interval then return fw:poll_interval(kind) end
    return kind == "hotload" and 5 or 10  -- the SDK's
  end
  return setmetatable({
    policy_client = opts.policy_client,
    deploy_mgr = opts.deploy_mgr,
    deployment_id = opts.deployment_id,
    base_model = opts.base_model or opts.policy_client.base_model or "",
    hotload_timeout = opts.hotload_timeout or 600,
    first_checkpoint_type = opts.first_checkpoint_type or "base",
    compression_format = opts.compression_format or default_format,
    warmup_after_hotload = opts.warmup_after_hotload ~= false,
    warmup_max_retries = opts.warmup_max_retries or 10,
    reset_prompt_cache = opts.reset_prompt_cache ~= false,
    lora_rank = opts.lora_rank or 0,
    poll_interval_s = opts.poll_interval_s or poll("hotload"),
    warmup_retry_interval_s = opts.warmup_retry_interval_s or poll("warmup"),
    quiet = opts.quiet,
    session_id = options.random_hex(8),
    base_saved = false,   -- a snapshot of this chain was saved (the SDK's flag)
    base_identity = nil,  -- the snapshot hotloaded last: the next delta's previous snapshot
    last_saved = nil,     -- the trainer's previous sampler snapshot: its next delta's base
    deployment_checked = false,
    last_timing = no_timing(),
  }, Syncer)
end

function Syncer:__tostring()
  return string.format("weight_syncer(%s, session %s, base %s)", tostring(self.deployment_id),
    self.session_id, tostring(self.base_identity))
end

function Syncer:_hotload_enabled()
  return self.deploy_mgr ~= nil and self.deployment_id ~= nil
end

function Syncer:_warn(message)
  if not self.quiet then io.stderr:write("weight_syncer: warning: " .. message .. "\n") end
end

local function reraise_interrupt(err)
  if type(err) == "table" and err.code == "interrupted" then error(err, 0) end
end

function Syncer:_owns(snapshot)
  return type(snapshot) == "string" and snapshot:sub(-9) == "-" .. self.session_id
end

function Syncer:check_deployment_state()
  if not self:_hotload_enabled() then return nil end
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
  if not self:_hotload_enabled() then return true end
  local timeout, interval = opts.timeout_s or 300, opts.poll_interval_s or self.poll_interval_s
  local started = flare.clock()
  while true do
    local st = self.deploy_mgr:hotload_check_status{deployment_id = self.deployment_id,
      base_model = self.base_model}
    if st.replicas and #st.replicas > 0 then return true end
    if flare.clock() - started + interval > timeout then
      options.raise("timeout", string.format("wait_for_hotload_ready: no replica of %s is up " ..
        "after %.0f s", self.deployment_id, flare.clock() - started), {retryable = true})
    end
    flare.sleep(interval)
  end
end

function Syncer:reset_delta_chain()
  self.base_saved = false
  self.base_identity = nil
  self.last_saved = nil
end

-- Before the first hotload (the SDK's _ensure_deployment_checked): a snapshot of another session
-- on the deployment is no link of this chain. Unlike the SDK it does not wait for a replica
-- first: the hotload request itself scales a deployment up and is retried until a replica
-- takes it.
function Syncer:_ensure_deployment_checked()
  if self.deployment_checked then return end
  self.deployment_checked = true
  local serving = self:check_deployment_state()
  if serving and serving ~= self.base_identity then self.base_identity = nil end
end

-- Whether a delta saved now would apply on what the deployment serves.
function Syncer:_delta_applies()
  if not self.last_saved then return false end
  if not self:_hotload_enabled() then return true end  -- save-only: deltas chain on the saves
  return self.last_saved == self.base_identity
end

-- The checkpoint type of the next save.
function Syncer:_next_type(requested)
  if requested and full_types[requested] then return requested end
  if self.lora_rank > 0 then return "base" end
  if not self.base_saved then
    local kind = requested or self.first_checkpoint_type
    if kind ~= "delta" then return kind end
    -- A first delta is valid only against a snapshot of this session that the deployment serves.
    local serving = self:_hotload_enabled() and self:check_deployment_state()
    if self:_owns(serving) and self.last_saved == serving then return "delta" end
    return "base"
  end
  return self:_delta_applies() and "delta" or "base"
end

function Syncer:_save(name, kind)
  if type(name) ~= "string" or name == "" then
    options.raise("invalid_argument", "save: name must be a non-empty string")
  end
  local snapshot = name .. "-" .. self.session_id
  local t0 = flare.clock()
  self.policy_client:save_weights_for_sampler(snapshot, {checkpoint_type = kind})
  self.last_timing.save_time_s = flare.clock() - t0
  self.base_saved = true
  self.last_saved = snapshot
  return snapshot
end

function Syncer:save_only(name, checkpoint_type)
  check_type(checkpoint_type, "save_only")
  self.last_timing = no_timing()
  local ok, snapshot = pcall(self._save, self, name, self:_next_type(checkpoint_type))
  if ok then return snapshot end
  reraise_interrupt(snapshot)
  if type(snapshot) == "table" and snapshot.code == "invalid_argument" then error(snapshot, 0) end
  self.last_error = snapshot
  self:_warn("save of " .. tostring(name) .. " failed: " .. tostring(snapshot))
  return nil
end

function Syncer:_warmup()
  if not self.warmup_after_hotload then return end
  local tw = flare.clock()
  local ok, err = pcall(self.deploy_mgr.warmup, self.deploy_mgr,
    self.deploy_mgr:_name(self.deployment_id), {max_retries = self.warmup_max_retries,
    retry_interval_s = self.warmup_retry_interval_s})
  self.last_timing.warmup_time_s = flare.clock() - tw
  if not ok then
    reraise_interrupt(err)
    self.last_warmup_error = err
    self:_warn("warmup after hotload failed (not fatal): " .. tostring(err))
  end
end

-- Hotloads and warms up; returns true, or false with self.last_error.
function Syncer:_do_hotload(snapshot, kind)
  self:_ensure_deployment_checked()
  local meta
  if kind == "delta" and self.lora_rank == 0 then  -- an adapter is standalone
    if not self.base_identity then
      self.last_error =
        "a delta needs a snapshot of this chain on the deployment; hotload a base first"
      return false
    end
    -- "alder32" (sic) is the protocol's own spelling of Adler-32; the SDK sends it so.
    meta = {previous_snapshot_identity = self.base_identity,
      compression_format = self.compression_format, checksum_format = "alder32"}
  end
  local t0 = flare.clock()
  local ok, err = pcall(self.deploy_mgr.hotload_and_wait, self.deploy_mgr, {
    deployment_id = self.deployment_id, base_model = self.base_model, snapshot_identity = snapshot,
    incremental_snapshot_metadata = meta, timeout_seconds = self.hotload_timeout,
    reset_prompt_cache = self.reset_prompt_cache, poll_interval_s = self.poll_interval_s,
    quiet = self.quiet})
  self.last_timing.hotload_time_s = flare.clock() - t0
  if not ok then
    reraise_interrupt(err)
    self.last_error = err  -- its message is deploy_mgr.last_hotload_error_message
    return false
  end
  self.base_identity = snapshot
  self:_warmup()
  return true
end

function Syncer:hotload(snapshot, checkpoint_type)
  check_type(checkpoint_type, "hotload")
  self.last_timing = no_timing()
  if not self:_hotload_enabled() then return false end
  return self:_do_hotload(snapshot, checkpoint_type or "base")
end

function Syncer:save_and_hotload(name, checkpoint_type)
  check_type(checkpoint_type, "save_and_hotload")
  local t0 = flare.clock()
  self.last_timing = no_timing()
  local kind = self:_next_type(checkpoint_type)
  local snapshot = self:_save(name, kind)
  if self:_hotload_enabled() and not self:_do_hotload(snapshot, kind) then
    self.last_timing.total_time_s = flare.clock() - t0
    local why = self.last_error
    local structured = type(why) == "table"
    options.raise(structured and why.code or "hotload_failed",
      "save_and_hotload: hotload of " .. kind .. " snapshot " .. snapshot .. " onto " ..
      self.deployment_id .. " failed: " .. tostring(structured and why.message or why) ..
      "; the next save will be a base",
      {status = structured and why.status or nil,
        retryable = structured and why.retryable or false})
  end
  self.last_timing.total_time_s = flare.clock() - t0
  return snapshot
end

return new
