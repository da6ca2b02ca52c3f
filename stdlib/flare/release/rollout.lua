-- flare.release.rollout: a staged rollout in one call. The canary share of a version walks
-- through the steps (5, 25, 50, 100 by default); each step is held for hold_s seconds while
-- the alert thresholds (flare.release.alerts) are checked on the version's requests logged
-- by the family's gateway. A fired alert ends the canary (or, at 100%, rolls production
-- back) with the alert as the recorded reason; at 100% the version becomes production.
--
--   rollout.run(family, id, {steps = {5, 25, 50, 100}, hold_s = 30, alerts = {...},
--     reason =, registry =, by =, force =, poll_s = 0.25, on_step = fn(step)})
--   -> {ok =, id =, steps = {{percent =, held_s =, metrics =}, ...}, reason =, elapsed_s =}
--   rollout.parse_steps("5,25,50,100"), rollout.parse_duration("30s" | "500ms" | "2m" | "4")
local args = require("flare.args")
local store = require("flare.release.store")
local stages = require("flare.release.stages")
local registry = require("flare.release.registry")
local alerts = require("flare.release.alerts")
local gateway = require("flare.release.gateway")
local errors = require("flare.release.errors")

local M = {}
local WHO = "flare.release.rollout"

function M.parse_steps(text, who)
  who = who or WHO
  local steps = {}
  for part in tostring(text):gmatch("[^,]+") do
    local p = tonumber(part)
    if not p or p <= 0 or p > 100 then
      errors.invalid(who, "option 'steps': each step is a traffic share above 0 and at most " ..
        "100, got '" .. part .. "'")
    end
    if #steps > 0 and p <= steps[#steps] then
      errors.invalid(who, "option 'steps' must increase, got " .. tostring(text))
    end
    steps[#steps + 1] = p
  end
  if #steps == 0 then errors.invalid(who, "option 'steps' is empty") end
  if steps[#steps] ~= 100 then
    errors.invalid(who, "option 'steps' must end at 100 (the version then becomes production), " ..
      "got " .. tostring(text))
  end
  return steps
end

local UNITS = {ms = 0.001, s = 1, m = 60, h = 3600}

function M.parse_duration(text, who)
  local n, unit = tostring(text):match("^%s*([%d.]+)%s*(%a*)%s*$")
  local scale = UNITS[unit == "" and "s" or unit]
  if not tonumber(n) or not scale then
    errors.invalid(who or WHO, "a duration is a number with ms, s, m or h (30s, 500ms, 2m), " ..
      "got '" .. tostring(text) .. "'")
  end
  return tonumber(n) * scale
end

function M.run(family, ref, o)
  o = args.options(o, {steps = "nil|table|string", hold_s = "nil|number", alerts = "nil|table",
    reason = "string", registry = "nil|string", by = "nil|string", force = "nil|boolean",
    poll_s = "nil|number", on_step = "nil|function"}, WHO)
  if not o.reason or o.reason:match("^%s*$") then
    errors.invalid(WHO, "option 'reason' is required (recorded with every step)")
  end
  local steps = type(o.steps) == "table" and M.parse_steps(table.concat(o.steps, ","))
    or M.parse_steps(o.steps or "5,25,50,100")
  local hold_s = o.hold_s or 30
  if hold_s < 0 then errors.invalid(WHO, "option 'hold_s' must be >= 0, got " .. hold_s) end
  local spec = alerts.spec(o.alerts)
  local opts = {registry = o.registry, by = o.by}
  local db = store.open(o.registry)
  local row = registry.find(db, ref)
  if row.family ~= family then
    errors.refused(row.id .. " is a version of family " .. row.family .. ", not " .. family)
  end
  if row.stage ~= "staging" and not (o.force and row.stage == "dev") then
    errors.refused(row.id .. " is in stage " .. row.stage .. "; a rollout takes a staging " ..
      "version (force = true, --force, for a dev one)")
  end
  local id = row.id
  local started = flare.time()
  local t0 = flare.clock()
  local out = {ok = true, id = id, steps = {}}
  -- the version's alerts over the window, counting from the rollout's start
  local function check()
    if not spec then return nil end
    local m = gateway.metrics(family, {registry = o.registry, version = id,
      since = math.max(started, flare.time() - spec.window_s)})[1]
    local fired = alerts.fired(m, spec)
    return #fired > 0 and table.concat(fired, "; ") or nil, m
  end
  local function fail(why, action)
    out.ok, out.reason = false, why
    local reason = "automatic rollback: alert on rollout of " .. id .. ": " .. why
    if action == "canary" then
      stages.canary(family, nil, {percent = 0, reason = reason, registry = o.registry,
        by = o.by or "flare release rollout"})
    elseif action == "production" then
      stages.rollback(family, {reason = reason, registry = o.registry,
        by = o.by or "flare release rollout"})
    end
    gateway.wait_applied(family, opts)  -- the gateway no longer serves the version
    out.elapsed_s = flare.clock() - t0
    return out
  end
  for i, percent in ipairs(steps) do
    local reason = string.format("rollout step %d/%d: %s", i, #steps, o.reason)
    if percent < 100 then
      stages.canary(family, id, {percent = percent, reason = reason, registry = o.registry,
        by = o.by})
    else
      stages.set_production(id, {reason = reason, registry = o.registry, by = o.by,
        force = o.force})
    end
    local applied = gateway.wait_applied(family, opts)
    local step = {percent = percent, applied_by_gateway = applied}
    local hold_start = flare.clock()
    if o.on_step then o.on_step(step) end
    while true do
      local route = stages.route(family, opts)
      if percent < 100 and not (route.canary and route.canary.id == id) then
        -- ended by someone else (a gateway's own alert, or a command)
        step.held_s = flare.clock() - hold_start
        out.steps[#out.steps + 1] = step
        return fail("the canary was ended during the hold", nil)
      end
      if percent == 100 and not (route.production and route.production.id == id) then
        step.held_s = flare.clock() - hold_start
        out.steps[#out.steps + 1] = step
        return fail("production changed during the hold", nil)
      end
      local why, m = check()
      step.metrics = m
      if why then
        step.held_s = flare.clock() - hold_start
        out.steps[#out.steps + 1] = step
        return fail(why, percent < 100 and "canary" or "production")
      end
      local left = hold_s - (flare.clock() - hold_start)
      if left <= 0 then break end
      flare.sleep(math.min(o.poll_s or 0.25, left))
    end
    step.held_s = flare.clock() - hold_start
    out.steps[#out.steps + 1] = step
  end
  out.elapsed_s = flare.clock() - t0
  return out
end

return M
