-- flare.release.stages: stage changes of registered versions, each one transaction with
-- its reason recorded (the one place a CLI, a recipe or a gateway changes a stage).
--
--   stages.promote(id, {to =, reason =, gate =, force =, by =, registry =}) -> record
--       dev -> staging needs a passing gate report for this version (gate = the report
--       table or its gate.json path) unless force = true; staging -> production is
--       set_production. `to` defaults to the next stage.
--   stages.set_production(id, {reason =, ...}) -> record   the family's production version
--       before it becomes retired ("replaced by ...")
--   stages.rollback(family, {reason =, ...}) -> record     the previous production version
--       (one not itself rolled back) serves again; the current one is retired
--   stages.retire(id, {reason =, ...}) -> record
--   stages.production(family, {registry =}) -> record or nil
--   stages.set_endpoint(id, {base_url =, model =}) where a version is served (the gateway's
--       upstream: base_url http(s)://host:port, model the name requests carry)
--   stages.canary(family, id, {percent =, reason =}) -> route  a share of the gateway's
--       traffic (0-100, sticky per user id) goes to the version; percent 0 ends the canary
--   stages.shadow(family, id, {percent =, reason =}) -> route  the gateway mirrors a share
--       of requests to the version; its answers are logged, never returned
--   stages.route(family, {registry =}) -> {production =, canary =, canary_percent =,
--       shadow =, shadow_percent =}
local json = require("flare.json")
local fs = require("flare.fs")
local args = require("flare.args")
local store = require("flare.release.store")
local registry = require("flare.release.registry")
local errors = require("flare.release.errors")

local M = {}

local opts_spec = {to = "nil|string", reason = "string", gate = "nil|string|table",
  force = "nil|boolean", by = "nil|string", registry = "nil|string"}

local function check(opts, who)
  opts = args.options(opts, opts_spec, who)
  if not opts.reason or opts.reason:match("^%s*$") then
    errors.invalid(who, "option 'reason' is required (why the stage changes)")
  end
  return opts
end

local function change(db, row, to, reason, by, action)
  local now = flare.time()
  db:query("UPDATE versions SET stage = ?, updated_at = ? WHERE id = ?", {to, now, row.id})
  db:query("INSERT INTO stage_changes(version, family, from_stage, to_stage, reason, at, by, " ..
    "action) VALUES(?, ?, ?, ?, ?, ?, ?, ?)", {row.id, row.family, row.stage, to, reason, now, by,
      action})
end

local function production_row(db, family)
  return db:query("SELECT * FROM versions WHERE family = ? AND stage = 'production'", {family})[1]
end

-- row becomes production; the current production version is retired with displaced_reason.
local function make_production(db, row, reason, displaced_reason, by, action)
  local current = production_row(db, row.family)
  if current and current.id == row.id then
    errors.refused(row.id .. " is already the production version of " .. row.family)
  end
  if current then
    change(db, current, "retired", displaced_reason, by,
      action == "rollback" and "rollback" or "replace")
  end
  change(db, row, "production", reason, by, action)
  -- the version's canary or shadow share ends: it now takes all the traffic
  local now = flare.time()
  db:query("UPDATE routes SET canary = NULL, canary_percent = 0, updated_at = ? " ..
    "WHERE family = ? AND canary = ?", {now, row.family, row.id})
  db:query("UPDATE routes SET shadow = NULL, shadow_percent = 0, updated_at = ? " ..
    "WHERE family = ? AND shadow = ?", {now, row.family, row.id})
end

local function read_gate(gate)
  if type(gate) == "table" then return gate end
  local text = fs.read_file(gate)
  if not text then
    errors.invalid("flare.release.promote", "option 'gate': no such file " .. gate)
  end
  return json.decode(text)
end

function M.set_production(ref, opts)
  opts = check(opts, "flare.release.set_production")
  local db = store.open(opts.registry)
  local by = registry.who(opts.by)
  local id = store.transaction(db, function()
    local row = registry.find(db, ref)
    if row.stage ~= "staging" and not opts.force then
      errors.refused(row.id .. " is in stage " .. row.stage ..
        "; production takes a staging version (force = true to skip staging)")
    end
    make_production(db, row, opts.reason, "replaced by " .. row.id .. ": " .. opts.reason, by,
      "promote")
    return row.id
  end)
  return registry.get(id, opts)
end

local next_stage = {dev = "staging", staging = "production"}

function M.promote(ref, opts)
  opts = check(opts, "flare.release.promote")
  local db = store.open(opts.registry)
  local row = registry.find(db, ref)
  local to = opts.to or next_stage[row.stage]
  if not to then
    errors.refused(row.id .. " is in stage " .. row.stage .. "; nothing to promote it to")
  end
  if not registry.stage_set[to] then
    errors.invalid("flare.release.promote", "option 'to' must be staging or production, got '" ..
      to .. "'" .. errors.suggest(to, registry.STAGES))
  end
  if to == "production" then return M.set_production(ref, opts) end
  if to ~= "staging" then
    errors.invalid("flare.release.promote", "option 'to' must be staging or production " ..
      "(flare.release.retire retires)")
  end
  if row.stage ~= "dev" then
    errors.refused(row.id .. " is in stage " .. row.stage .. "; staging takes a dev version")
  end
  local reason = opts.reason
  if not opts.force then
    if not opts.gate then
      errors.refused("promoting " .. row.id .. " to staging needs a passing gate report " ..
        "(option 'gate', `flare release gate`), or force = true")
    end
    local g = read_gate(opts.gate)
    if g.candidate ~= row.id then
      errors.refused("the gate report is for " .. tostring(g.candidate) .. ", not " .. row.id)
    end
    if not g.passed then
      errors.refused("the gate report for " .. row.id .. " failed: " ..
        table.concat(g.failed or {}, ", "))
    end
    reason = reason .. " (gate passed, suite " .. tostring(g.suite_id) .. ")"
  end
  local by = registry.who(opts.by)
  store.transaction(db, function()
    local fresh = registry.find(db, row.id)
    if fresh.stage ~= "dev" then
      errors.refused(row.id .. " changed stage meanwhile: " .. fresh.stage)
    end
    change(db, fresh, "staging", reason, by, "promote")
  end)
  return registry.get(row.id, opts)
end

-- The versions that served production, newest first, that were not rolled back.
local function previous_production(db, family, current_id)
  local rolled_back = {}
  for _, r in ipairs(db:query("SELECT version FROM stage_changes WHERE family = ? AND " ..
    "action = 'rollback' AND from_stage = 'production'", {family})) do
    rolled_back[r.version] = true
  end
  for _, r in ipairs(db:query("SELECT version FROM stage_changes WHERE family = ? AND " ..
    "to_stage = 'production' ORDER BY seq DESC", {family})) do
    if r.version ~= current_id and not rolled_back[r.version] then return r.version end
  end
  return nil
end

function M.rollback(family, opts)
  opts = check(opts, "flare.release.rollback")
  if type(family) ~= "string" or family == "" then
    errors.invalid("flare.release.rollback", "argument 'family' must be a family name")
  end
  if family:find("@", 1, true) then
    errors.invalid("flare.release.rollback",
      "argument 'family' is a family name, not a version ('" ..
      family .. "')")
  end
  local db = store.open(opts.registry)
  local by = registry.who(opts.by)
  local id = store.transaction(db, function()
    if not db:query("SELECT 1 AS x FROM families WHERE family = ?", {family})[1] then
      registry.unknown_family(db, family)
    end
    local current = production_row(db, family)
    if not current then
      errors.refused("family " .. family .. " has no production version to roll back")
    end
    local prev = previous_production(db, family, current.id)
    if not prev then
      errors.refused("family " .. family .. " has no earlier production version than " ..
        current.id)
    end
    local row = db:query("SELECT * FROM versions WHERE id = ?", {prev})[1]
    make_production(db, row, "rollback from " .. current.id .. ": " .. opts.reason,
      "rolled back to " .. row.id .. ": " .. opts.reason, by, "rollback")
    -- a canary in flight ends with the rollback
    db:query("UPDATE routes SET canary = NULL, canary_percent = 0, updated_at = ? " ..
      "WHERE family = ?", {flare.time(), family})
    return row.id
  end)
  return registry.get(id, opts)
end

function M.retire(ref, opts)
  opts = check(opts, "flare.release.retire")
  local db = store.open(opts.registry)
  local by = registry.who(opts.by)
  local id = store.transaction(db, function()
    local row = registry.find(db, ref)
    if row.stage == "retired" then errors.refused(row.id .. " is already retired") end
    if row.stage == "production" then
      errors.refused(row.id .. " is the production version; roll back or set another first")
    end
    change(db, row, "retired", opts.reason, by, "retire")
    return row.id
  end)
  return registry.get(id, opts)
end

function M.set_endpoint(ref, opts)
  local who = "flare.release.set_endpoint"
  opts = args.options(opts, {base_url = "string", model = "string", registry = "nil|string"}, who)
  if not opts.base_url or not opts.base_url:match("^https?://[^/]+") then
    errors.invalid(who, "option 'base_url' must be http://host:port or https://host, got " ..
      tostring(opts.base_url))
  end
  if not opts.model or opts.model == "" then
    errors.invalid(who, "option 'model' is required (the model name requests to it carry)")
  end
  local db = store.open(opts.registry)
  return store.transaction(db, function()
    local row = registry.find(db, ref)
    db:query("INSERT INTO endpoints(version, base_url, model, updated_at) VALUES(?, ?, ?, ?) " ..
      "ON CONFLICT(version) DO UPDATE SET base_url = excluded.base_url, " ..
      "model = excluded.model, updated_at = excluded.updated_at",
      {row.id, (opts.base_url:gsub("/+$", "")), opts.model, flare.time()})
    return row.id
  end)
end

local function check_family(db, family, who)
  if type(family) ~= "string" or family == "" or family:find("@", 1, true) then
    errors.invalid(who, "argument 'family' must be a family name, got " .. tostring(family))
  end
  if not db:query("SELECT 1 AS x FROM families WHERE family = ?", {family})[1] then
    registry.unknown_family(db, family)
  end
end

-- Sets the canary or the shadow share of a family's gateway route (kind "canary" | "shadow").
local function set_share(kind, family, ref, opts)
  local who = "flare.release." .. kind
  opts = args.options(opts, {percent = "number", reason = "string", by = "nil|string",
    registry = "nil|string"}, who)
  local percent = opts.percent
  if type(percent) ~= "number" or percent ~= percent or percent < 0 or percent > 100 then
    errors.invalid(who, "option 'percent' must be a traffic share from 0 to 100, got " ..
      tostring(percent))
  end
  if not opts.reason or opts.reason:match("^%s*$") then
    errors.invalid(who, "option 'reason' is required (why the " .. kind .. " starts or ends)")
  end
  local db = store.open(opts.registry)
  local by = registry.who(opts.by)
  store.transaction(db, function()
    check_family(db, family, who)
    local prev = db:query("SELECT " .. kind .. " AS v FROM routes WHERE family = ?", {family})[1]
    local id
    if percent > 0 then
      local row = registry.find(db, ref)
      if row.family ~= family then
        errors.refused(row.id .. " is a version of family " .. row.family .. ", not " .. family)
      end
      if row.stage ~= "staging" and row.stage ~= "dev" then
        errors.refused(row.id .. " is in stage " .. row.stage ..
          "; a " .. kind .. " runs a dev or staging version")
      end
      if not db:query("SELECT 1 AS x FROM endpoints WHERE version = ?", {row.id})[1] then
        errors.refused(row.id .. " has no endpoint (flare release endpoint " .. row.id ..
          " --url URL --model MODEL)")
      end
      id = row.id
    end
    db:query("INSERT INTO routes(family, " .. kind .. ", " .. kind .. "_percent, updated_at) " ..
      "VALUES(?, ?, ?, ?) ON CONFLICT(family) DO UPDATE SET " .. kind .. " = excluded." .. kind ..
      ", " .. kind .. "_percent = excluded." .. kind .. "_percent, " ..
      "updated_at = excluded.updated_at", {family, id, percent > 0 and percent or 0, flare.time(),
        n = 4})
    local target = id or (prev and prev.v)
    db:query("INSERT INTO stage_changes(version, family, from_stage, to_stage, reason, at, by, " ..
      "action) SELECT id, family, stage, stage, ?, ?, ?, ? FROM versions WHERE id = ?",
      {string.format("%s %g%%: %s", kind, percent, opts.reason), flare.time(), by,
        percent > 0 and kind or (kind .. "_end"), target, n = 5})
  end)
  return M.route(family, opts)
end

function M.canary(family, ref, opts) return set_share("canary", family, ref, opts) end
function M.shadow(family, ref, opts) return set_share("shadow", family, ref, opts) end

function M.route(family, opts)
  local db = store.open((opts or {}).registry)
  check_family(db, family, "flare.release.route")
  local out = {family = family, canary_percent = 0}
  local prod = production_row(db, family)
  local function endpoint(id)
    return db:query("SELECT base_url, model FROM endpoints WHERE version = ?", {id})[1]
  end
  if prod then out.production = {id = prod.id, endpoint = endpoint(prod.id)} end
  out.shadow_percent = 0
  local r = db:query("SELECT * FROM routes WHERE family = ?", {family})[1]
  if r and r.canary and r.canary_percent > 0 then
    out.canary = {id = r.canary, endpoint = endpoint(r.canary)}
    out.canary_percent = r.canary_percent
  end
  if r and r.shadow and r.shadow_percent > 0 then
    out.shadow = {id = r.shadow, endpoint = endpoint(r.shadow)}
    out.shadow_percent = r.shadow_percent
  end
  return out
end

function M.production(family, opts)
  local db = store.open((opts or {}).registry)
  local row = production_row(db, family)
  return row and registry.row_to_record(db, row) or nil
end

return M
