-- flare.release.registry: versions of a model family in the release registry.
--
--   registry.register{family =, base_model =, snapshot = | adapter =, weights = PATH |
--     weights_sha256 =, run = run | run_dir =, parent =, data =, evals =, stage = "dev",
--     by =, registry =} -> record
--     deployment = info (a DeploymentInfo) gives base_model and, with a local bucket (the
--     emulator's), the snapshot's weights file
--   registry.get(ref, {registry =}) -> record     ref: family@vN, family@production,
--     family@latest, or a prefix (8+ hex digits) of the weights' sha256
--   registry.list(family, {registry =}) -> records (oldest first)
--   registry.families({registry =}) -> names
--
-- A record: id (family@vN), family, number, weights_sha256, kind (snapshot | adapter),
-- model, base_model, parent, run_dir, config (the run's config.json, with git_commit
-- when its script sits in a git work tree), data (the data pointer), evals, stage,
-- created_at, updated_at, registered_by, history (stage changes, oldest first).
local json = require("flare.json")
local fs = require("flare.fs")
local store = require("flare.release.store")
local errors = require("flare.release.errors")

local M = {}

M.STAGES = {"dev", "staging", "production", "retired"}
local stage_set = {dev = true, staging = true, production = true, retired = true}
M.stage_set = stage_set

local function encode(v) return json.encode(v == nil and json.null or v, {sort_keys = true}) end

local function decode(text)
  if text == nil then return nil end
  local v = json.decode(text)
  if v == json.null then return nil end
  return v
end

-- The login name of this process's user: $USER, $LOGNAME, else /etc/passwd's entry of its uid.
local function user_name()
  local env = os.getenv("USER") or os.getenv("LOGNAME")
  if env and env ~= "" then return env end
  local uid = (fs.read_file("/proc/self/status") or ""):match("\nUid:%s*(%d+)")
  for line in (fs.read_file("/etc/passwd") or ""):gmatch("[^\n]+") do
    local name, id = line:match("^([^:]*):[^:]*:(%d+):")
    if id and id == uid then return name end
  end
  return uid and ("uid " .. uid) or "unknown"
end

function M.who(by)
  if by then return by end
  local user = user_name()
  local host = (fs.read_file("/proc/sys/kernel/hostname") or ""):gsub("%s+$", "")
  return host ~= "" and (user .. "@" .. host) or user
end

-- sha256 of a weights file, or of a folder's files (name and hash of each, sorted).
function M.hash_weights(path)
  if fs.is_dir(path) then
    local lines = {}
    for _, name in ipairs(fs.list_dir(path)) do
      local p = path .. "/" .. name
      if not fs.is_dir(p) then lines[#lines + 1] = name .. "\0" .. fs.sha256_file(p) .. "\n" end
    end
    if #lines == 0 then
      errors.invalid("flare.release.register", "option 'weights': folder " .. path ..
        " holds no files")
    end
    return fs.sha256(table.concat(lines))
  end
  if not fs.exists(path) then
    errors.invalid("flare.release.register", "option 'weights': no such file " .. path)
  end
  return fs.sha256_file(path)
end

-- The commit of the git work tree holding `script`, or nil.
local function git_commit(script)
  if type(script) ~= "string" or not fs.exists(script) then return nil end
  local dir = script:match("^(.*)/[^/]*$") or "."
  local ok, r = pcall(flare.proc.run, {argv = {"git", "-C", dir, "rev-parse", "HEAD"},
    timeout_s = 10})
  if not ok or r.status ~= 0 then return nil end
  local commit = r.stdout:match("^(%x+)%s*$")
  if not commit then return nil end
  local st = flare.proc.run{argv = {"git", "-C", dir, "status", "--porcelain", "--",
    script:match("[^/]+$")}, timeout_s = 10}
  return commit, st.status == 0 and st.stdout ~= ""
end

-- The data pointer: config.data_files (a list of {path =, sha256 =}, or a map path ->
-- sha256), else the task generator and its seed.
function M.data_pointer(config)
  local files = config.data_files
  if type(files) == "table" then
    local out = {}
    if #files > 0 then
      for i, f in ipairs(files) do
        if type(f) ~= "table" or type(f.sha256) ~= "string" then
          errors.invalid("flare.release.register", "config.json data_files[" .. i ..
            "] must be {path =, sha256 =}")
        end
        out[#out + 1] = {path = f.path, sha256 = f.sha256}
      end
    else
      for path, sha in pairs(files) do out[#out + 1] = {path = path, sha256 = sha} end
      table.sort(out, function(a, b) return tostring(a.path) < tostring(b.path) end)
    end
    return {files = out}
  end
  local c = config.config or {}
  local task = c.task or c.tasks
  if task ~= nil then return {task = task, seed = config.seed or c.seed} end
  return nil
end

local function read_config(run_dir)
  local path = run_dir .. "/config.json"
  local text = fs.read_file(path)
  if not text then
    errors.invalid("flare.release.register", "option 'run_dir': no config.json in " .. run_dir)
  end
  local ok, config = pcall(json.decode, text)
  if not ok or type(config) ~= "table" then
    errors.invalid("flare.release.register", path .. " is not a JSON object")
  end
  if config.git_commit == nil then
    local commit, dirty = git_commit(config.script)
    if commit then
      config.git_commit = commit
      if dirty then config.git_dirty = true end
    end
  end
  return config
end

local function family_of(db, family)
  return db:query("SELECT family, base_model FROM families WHERE family = ?", {family})[1]
end

local function known_families(db)
  local names = {}
  for _, r in ipairs(db:query("SELECT family FROM families ORDER BY family")) do
    names[#names + 1] = r.family
  end
  return names
end

function M.unknown_family(db, family)
  local names = known_families(db)
  errors.not_found("unknown family '" .. tostring(family) .. "'" .. errors.suggest(family, names) ..
    (#names > 0 and (" (families: " .. table.concat(names, ", ") .. ")") or
      " (the registry " .. db:path() .. " has no versions yet)"))
end

local function history(db, id)
  local out = {}
  for _, r in ipairs(db:query("SELECT * FROM stage_changes WHERE version = ? ORDER BY seq", {
    id})) do
    out[#out + 1] = {from = r.from_stage, to = r.to_stage, reason = r.reason, at = r.at, by = r.by,
      action = r.action}
  end
  return out
end

function M.row_to_record(db, r)
  return {id = r.id, family = r.family, number = r.number, weights_sha256 = r.weights_sha256,
    kind = r.kind, model = r.model, base_model = r.base_model, parent = r.parent,
    run_dir = r.run_dir, config = decode(r.config), data = decode(r.data),
    evals = decode(r.evals), stage = r.stage, created_at = r.created_at,
    updated_at = r.updated_at, registered_by = r.registered_by, history = history(db, r.id)}
end

-- The versions row for ref, or a not_found error naming what is known.
function M.find(db, ref)
  if type(ref) ~= "string" or ref == "" then
    errors.invalid("flare.release", "a version id looks like family@vN, got " .. tostring(ref))
  end
  local family, rest = ref:match("^([^@]+)@(.+)$")
  local row
  if family then
    if not family_of(db, family) then M.unknown_family(db, family) end
    local n = rest:match("^v(%d+)$")
    if n then
      row = db:query("SELECT * FROM versions WHERE family = ? AND number = ?", {family,
        tonumber(n)})[1]
    elseif rest == "latest" then
      row = db:query("SELECT * FROM versions WHERE family = ? ORDER BY number DESC LIMIT 1",
        {family})[1]
    elseif stage_set[rest] then
      row = db:query("SELECT * FROM versions WHERE family = ? AND stage = ? " ..
        "ORDER BY updated_at DESC, number DESC LIMIT 1", {family, rest})[1]
    else
      errors.invalid("flare.release", "version '" .. ref ..
        "': after @ comes vN, latest or a stage (dev, staging, production, retired)")
    end
    if not row then
      local last = db:query("SELECT max(number) AS n FROM versions WHERE family = ?", {family})[1]
      errors.not_found("no version " .. ref .. " (family " .. family .. " has v1..v" ..
        tostring(last and last.n or 0) .. ")")
    end
    return row
  end
  if ref:match("^%x+$") and #ref >= 8 then
    local rows = db:query("SELECT * FROM versions WHERE weights_sha256 LIKE ? ORDER BY id",
      {ref:lower() .. "%"})
    if #rows == 1 then return rows[1] end
    if #rows > 1 then
      local ids = {}
      for _, r in ipairs(rows) do ids[#ids + 1] = r.id end
      errors.invalid("flare.release", "hash prefix " .. ref .. " matches " .. table.concat(ids,
        ", "))
    end
    errors.not_found("no version with weights sha256 " .. ref .. "...")
  end
  if family_of(db, ref) then
    errors.invalid("flare.release", "'" .. ref .. "' is a family; a version is " .. ref .. "@vN")
  end
  errors.not_found("unknown version '" .. ref .. "' (ids look like family@vN)")
end

function M.get(ref, opts)
  opts = opts or {}
  local db = store.open(opts.registry)
  return M.row_to_record(db, M.find(db, ref))
end

function M.list(family, opts)
  opts = opts or {}
  if type(family) ~= "string" or family == "" then
    errors.invalid("flare.release.list", "argument 'family' must be a family name")
  end
  local db = store.open(opts.registry)
  if not family_of(db, family) then M.unknown_family(db, family) end
  local out = {}
  for _, r in ipairs(db:query("SELECT * FROM versions WHERE family = ? ORDER BY number", {
    family})) do
    out[#out + 1] = M.row_to_record(db, r)
  end
  return out
end

function M.families(opts)
  return known_families(store.open((opts or {}).registry))
end

-- The local weights of a snapshot in a deployment's hotload bucket (a file:// URL, as the
-- emulator's): <bucket>/<identity>/model.safetensors, or the folder of a LoRA adapter.
function M.bucket_weights(bucket_url, identity)
  local who = "flare.release.register"
  local dir = type(bucket_url) == "string" and bucket_url:match("^file://(/.*)$")
  if not dir then
    errors.invalid(who, "the deployment's bucket " .. tostring(bucket_url) .. " is not a local " ..
      "folder; give option 'weights' (a file) or 'weights_sha256'")
  end
  local snap = dir:gsub("/*$", "") .. "/" .. identity
  if fs.exists(snap .. "/model.safetensors") then return snap .. "/model.safetensors" end
  if fs.exists(snap .. "/adapter_model.safetensors") then return snap end
  if fs.exists(snap .. "/model.delta") then
    errors.invalid(who, "snapshot " .. identity .. " is a delta; register a base snapshot " ..
      "(syncer:save_only(name, \"base\") or save_and_hotload(name, \"base\"))")
  end
  errors.invalid(who, "option 'snapshot': no snapshot " .. identity .. " in the bucket " .. dir)
end

M.register_spec = {family = "string", base_model = "string", deployment = "nil|table",
  snapshot = "nil|string",
  adapter = "nil|string", weights = "nil|string", weights_sha256 = "nil|string",
  run = "nil|table", run_dir = "nil|string", parent = "nil|string", data = "nil|table",
  evals = "nil|table", stage = "nil|string", by = "nil|string", registry = "nil|string",
  config = "nil|table"}

function M.register(opts)
  local who = "flare.release.register"
  opts = require("flare.args").options(opts, M.register_spec, who)
  if opts.deployment then
    opts.base_model = opts.base_model or opts.deployment.base_model
    if not opts.weights and not opts.weights_sha256 and opts.snapshot then
      opts.weights = M.bucket_weights(opts.deployment.hot_load_bucket_url, opts.snapshot)
    end
  end
  if not opts.family or not opts.family:match("^[%w_.-]+$") then
    errors.invalid(who, "option 'family' is required (letters, digits, _ . -)")
  end
  if not opts.base_model or opts.base_model == "" then
    errors.invalid(who, "option 'base_model' is required (the model the weights build on)")
  end
  if (opts.snapshot == nil) == (opts.adapter == nil) then
    errors.invalid(who, "give exactly one of option 'snapshot' (a sampler snapshot identity) " ..
      "or 'adapter' (a LoRA adapter model)")
  end
  local sha = opts.weights_sha256
  if sha then
    if not sha:match("^%x+$") or #sha ~= 64 then
      errors.invalid(who, "option 'weights_sha256' must be 64 hex digits")
    end
    sha = sha:lower()
  elseif opts.weights then
    sha = M.hash_weights(opts.weights)
  else
    errors.invalid(who,
      "option 'weights' (the weights file or folder) or 'weights_sha256' is required")
  end
  local stage = opts.stage or "dev"
  if stage ~= "dev" and stage ~= "staging" then
    errors.invalid(who, "option 'stage' must be dev or staging (production comes through " ..
      "flare.release.set_production), got '" .. stage .. "'")
  end
  local run_dir = opts.run_dir or (opts.run and opts.run.dir)
  local config = opts.config or {}
  if run_dir then config = read_config(run_dir) end
  local data = opts.data or M.data_pointer(config)
  local by = M.who(opts.by)
  local db = store.open(opts.registry)
  local now = flare.time()
  local row = store.transaction(db, function()
    local fam = family_of(db, opts.family)
    if fam and fam.base_model ~= opts.base_model then
      errors.refused("version from another base: family " .. opts.family .. " builds on " ..
        fam.base_model .. ", this version on " .. opts.base_model)
    end
    local dup = db:query("SELECT id FROM versions WHERE family = ? AND weights_sha256 = ?",
      {opts.family, sha})[1]
    if dup then
      errors.refused("these weights (sha256 " .. sha:sub(1, 12) .. ") are already registered as " ..
        dup.id)
    end
    local parent = opts.parent
    if parent then
      local p = M.find(db, parent)
      if p.base_model ~= opts.base_model then
        errors.refused("parent " .. p.id .. " is a version from another base (" .. p.base_model ..
          "), not " .. opts.base_model)
      end
      parent = p.id
    elseif fam then
      local prod = db:query("SELECT id FROM versions WHERE family = ? AND stage = 'production'",
        {opts.family})[1]
      parent = prod and prod.id or nil
    end
    if not fam then
      db:query("INSERT INTO families(family, base_model, created_at) VALUES(?, ?, ?)",
        {opts.family, opts.base_model, now})
    end
    local n = db:query("SELECT coalesce(max(number), 0) + 1 AS n FROM versions WHERE family = ?",
      {opts.family})[1].n
    local id = opts.family .. "@v" .. math.floor(n)
    db:query("INSERT INTO versions(id, family, number, weights_sha256, kind, model, base_model, " ..
      "parent, run_dir, config, data, evals, stage, created_at, updated_at, registered_by) " ..
      "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      {id, opts.family, n, sha, opts.snapshot and "snapshot" or "adapter",
        opts.snapshot or opts.adapter, opts.base_model, parent, run_dir, encode(config),
        encode(data), encode(opts.evals), stage, now, now, by})
    db:query("INSERT INTO stage_changes(version, family, from_stage, to_stage, reason, at, by, " ..
      "action) VALUES(?, ?, NULL, ?, ?, ?, ?, 'register')", {id, opts.family, stage, "registered",
        now, by})
    return db:query("SELECT * FROM versions WHERE id = ?", {id})[1]
  end)
  return M.row_to_record(db, row)
end

-- Stores eval results ({suite_id =, slices =, ...}) on a version.
function M.set_evals(ref, evals, opts)
  opts = opts or {}
  local db = store.open(opts.registry)
  return store.transaction(db, function()
    local row = M.find(db, ref)
    db:query("UPDATE versions SET evals = ?, updated_at = ? WHERE id = ?",
      {encode(evals), flare.time(), row.id})
    return row.id
  end)
end

return M
