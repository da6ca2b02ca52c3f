-- flare.release.cli: `flare release [--registry PATH] COMMAND ...`; returns the exit status.
local json = require("flare.json")
local fs = require("flare.fs")
local errors = require("flare.release.errors")

local USAGE = [[
usage: flare release [--registry PATH] COMMAND ...

  list FAMILY [--json]            the family's versions, oldest first
  show ID [--json]                one version's record (ID: family@vN, family@production,
                                  family@latest, or a weights sha256 prefix)
  families                        the registered families
  register --family F --base-model B (--snapshot S | --adapter A)
           (--weights PATH | --weights-sha256 HEX) [--run-dir DIR] [--parent ID]
           [--stage dev|staging] [--evals FILE]
  promote ID --reason TEXT [--to staging|production] [--gate GATE_JSON] [--force]
  rollback FAMILY --reason TEXT   the previous production version serves again
  retire ID --reason TEXT
  endpoint ID --url URL --model MODEL
                                  where the version is served (the gateway's upstream)
  canary FAMILY ID --percent P --reason TEXT
                                  P% of the gateway's traffic (sticky per user) to ID;
                                  --percent 0 ends the canary
  shadow FAMILY ID --percent P --reason TEXT
                                  the gateway mirrors P% of requests to ID; its answers
                                  are logged, never returned; --percent 0 ends it
  rollout FAMILY ID [--steps 5,25,50,100] [--hold 30s] [--reason TEXT] [--force]
          [--alert-error-rate PCT (5)] [--alert-p95-ms MS] [--alert-min-feedback X]
          [--alert-window SECONDS] [--alert-min-requests N]
                                  walks ID's canary share through the steps, holding
                                  each and checking the alerts on the requests the
                                  gateway logged; at 100 ID becomes production. A fired
                                  alert ends the canary (or rolls production back),
                                  recorded as the reason; exit 1
  route FAMILY                    production, canary and shadow as the gateway serves them
  feedback REQUEST_ID SCORE       a score for an answer of the gateway (its
                                  x-flare-request-id header)
  metrics FAMILY [--window SECONDS]
                                  per-version p50/p95/p99 latency, error rate, tokens
                                  (prompt + completion) per request
  gate --suite SUITE --baseline RESULTS --candidate RESULTS [--gates GATES]
       [--out DIR]                promotion gates; exit 0 pass, 1 fail
  drift --train FILE (--live FILE | --family FAMILY [--window SECONDS]) [--max-distance X]
                                  Jensen-Shannon distance of the token distributions
                                  (--family: the prompts flare gateway logged)
  collapse --candidate RESULTS --parent RESULTS
                                  distinct-n and length growth against the parent

The registry is --registry PATH, else $FLARE_REGISTRY, else
$XDG_DATA_HOME/flare/registry.sqlite (~/.local/share/flare/registry.sqlite).
promote, rollback, canary and shadow return once a running flare gateway of the family
serves the change.
See docs/release.md.]]

local function usage(message)
  flare.error{code = "usage", message = message .. "\n" .. USAGE}
end

-- Splits args into positionals and --flags (each flag of `spec`: "value" or "bool").
local function parse(args, spec, command)
  return require("flare.release.cli_args").parse(args, spec, command, usage)
end

local function fmt_time(t)
  return t and os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t)) or "-"
end

local function print_json(v)
  io.stdout:write(json.encode(v, {pretty = true, sort_keys = true}), "\n")
end

local function one_line_data(data)
  if not data then return "(none recorded)" end
  if data.files then
    local parts = {}
    for _, f in ipairs(data.files) do
      parts[#parts + 1] = tostring(f.path) .. " sha256:" .. tostring(f.sha256):sub(1, 12)
    end
    return #data.files .. " file(s): " .. table.concat(parts, ", ")
  end
  if data.task then
    local task = type(data.task) == "table" and json.encode(data.task) or tostring(data.task)
    return "task " .. task .. ", seed " .. tostring(data.seed)
  end
  return json.encode(data, {sort_keys = true})
end

local function show_record(r)
  local c = r.config or {}
  local lines = {
    r.id .. "  (weights sha256 " .. r.weights_sha256 .. ")",
    "  stage        " .. r.stage,
    "  " .. (r.kind == "adapter" and "adapter      " or "snapshot     ") .. r.model,
    "  base model   " .. r.base_model,
    "  parent       " .. (r.parent or "-"),
    "  run dir      " .. (r.run_dir or "-"),
    "  seed         " .. tostring(c.seed or "-"),
    "  script       " .. tostring(c.script or "-") .. (c.script_sha256 and
      (" sha256 " .. c.script_sha256) or ""),
    "  git commit   " .. tostring(c.git_commit or "-") ..
      (c.git_dirty and " (script modified)" or ""),
    "  flare        " .. tostring(c.flare_version or "-"),
    "  config       " .. (c.config and json.encode(c.config, {sort_keys = true}) or "-"),
    "  data         " .. one_line_data(r.data),
    "  registered   " .. fmt_time(r.created_at) .. " by " .. r.registered_by,
  }
  local ev = r.evals
  if ev and ev.slices then
    lines[#lines + 1] = "  evals        suite " .. tostring(ev.suite_id)
    local names = {}
    for k in pairs(ev.slices) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do
      local s = ev.slices[k]
      lines[#lines + 1] = string.format("    %-20s %.4f (n=%s)", k,
        tonumber(s.mean or s.score or s) or 0, tostring(s.n or "-"))
    end
  else
    lines[#lines + 1] = "  evals        -"
  end
  lines[#lines + 1] = "  stage history"
  for _, h in ipairs(r.history or {}) do
    lines[#lines + 1] = string.format("    %s  %-10s -> %-10s %s (%s)", fmt_time(h.at),
      tostring(h.from or "-"), h.to, h.reason, h.by)
  end
  io.stdout:write(table.concat(lines, "\n"), "\n")
end

local function read_json_file(path, what)
  local text = fs.read_file(path)
  if not text then errors.invalid("flare release", what .. ": no such file " .. path) end
  local ok, v = pcall(json.decode, text)
  if not ok then
    errors.invalid("flare release", what .. ": " .. path .. " is not JSON: " .. tostring(v))
  end
  return v
end

local commands = {}

function commands.list(args, o)
  local pos, flags = parse(args, {json = "bool"}, "list")
  if #pos ~= 1 then usage("list: one FAMILY is required") end
  local rows = require("flare.release.registry").list(pos[1], o)
  if flags.json then print_json(rows) return 0 end
  io.stdout:write(string.format("%-20s %-11s %-14s %-22s %-20s %s\n", "ID", "STAGE", "SHA256",
    "MODEL", "REGISTERED", "PARENT"))
  for _, r in ipairs(rows) do
    io.stdout:write(string.format("%-20s %-11s %-14s %-22s %-20s %s\n", r.id, r.stage,
      r.weights_sha256:sub(1, 12), r.model, fmt_time(r.created_at), r.parent or "-"))
  end
  return 0
end

function commands.show(args, o)
  local pos, flags = parse(args, {json = "bool"}, "show")
  if #pos ~= 1 then usage("show: one version ID is required") end
  local r = require("flare.release.registry").get(pos[1], o)
  if flags.json then print_json(r) else show_record(r) end
  return 0
end

function commands.families(args, o)
  parse(args, {}, "families")
  for _, f in ipairs(require("flare.release.registry").families(o)) do io.stdout:write(f, "\n") end
  return 0
end

function commands.register(args, o)
  local pos, f = parse(args, {family = "value", ["base-model"] = "value", snapshot = "value",
    adapter = "value", weights = "value", ["weights-sha256"] = "value", ["run-dir"] = "value",
    parent = "value", stage = "value", evals = "value", by = "value"}, "register")
  if #pos > 0 then usage("register: unexpected argument '" .. pos[1] .. "'") end
  local r = require("flare.release.registry").register{family = f.family,
    base_model = f["base-model"], snapshot = f.snapshot, adapter = f.adapter, weights = f.weights,
    weights_sha256 = f["weights-sha256"], run_dir = f["run-dir"], parent = f.parent,
    stage = f.stage, by = f.by, registry = o.registry,
    evals = f.evals and read_json_file(f.evals, "--evals") or nil}
  io.stdout:write("registered ", r.id, " (weights sha256 ", r.weights_sha256, ")\n")
  return 0
end

-- A command that changes a family's route returns once the family's running gateway serves
-- the new route: a request sent after it goes by the new route.
local function await_gateway(family, o)
  local ok, why = require("flare.release.gateway").wait_applied(family, {registry = o.registry})
  if ok then
    io.stdout:write("the gateway of ", family, " serves the current route\n")
  elseif why == "timeout" then
    io.stderr:write("flare: release: the running gateway of ", family, " did not apply the " ..
      "change within 10 s (see its output)\n")
  end
end

local function stage_command(name, fn_name, positional)
  return function(args, o)
    local spec = {reason = "value", by = "value"}
    if name == "promote" then
      spec.to, spec.gate, spec.force = "value", "value", "bool"
    end
    local pos, f = parse(args, spec, name)
    if #pos ~= 1 then usage(name .. ": one " .. positional .. " is required") end
    if not f.reason then usage(name .. ": --reason TEXT is required (recorded with the change)") end
    local r = require("flare.release.stages")[fn_name](pos[1], {reason = f.reason, to = f.to,
      gate = f.gate, force = f.force, by = f.by, registry = o.registry})
    io.stdout:write(r.id, " is now ", r.stage, "\n")
    if name ~= "retire" then await_gateway(r.family, o) end
    return 0
  end
end

commands.promote = stage_command("promote", "promote", "version ID")
commands.rollback = stage_command("rollback", "rollback", "FAMILY")
commands.retire = stage_command("retire", "retire", "version ID")

function commands.endpoint(args, o)
  local pos, f = parse(args, {url = "value", model = "value"}, "endpoint")
  if #pos ~= 1 then usage("endpoint: one version ID is required") end
  if not f.url or not f.model then usage("endpoint: --url and --model are required") end
  local id = require("flare.release.stages").set_endpoint(pos[1], {base_url = f.url,
    model = f.model, registry = o.registry})
  io.stdout:write(id, " is served at ", f.url, " as ", f.model, "\n")
  return 0
end

local function print_route(r)
  io.stdout:write(string.format("%s: production %s, canary %s at %g%%, shadow %s at %g%%\n",
    r.family, r.production and r.production.id or "-", r.canary and r.canary.id or "-",
    r.canary_percent, r.shadow and r.shadow.id or "-", r.shadow_percent))
end

local function share_command(kind)
  return function(args, o)
    local pos, f = parse(args, {percent = "value", reason = "value", by = "value"}, kind)
    if #pos < 1 or #pos > 2 then usage(kind .. ": FAMILY and a version ID are required") end
    if not f.percent then usage(kind .. ": --percent P is required (0 ends the " .. kind .. ")") end
    local percent = tonumber(f.percent)
    if not percent then usage(kind .. ": --percent expects a number, got '" .. f.percent .. "'") end
    if not f.reason then usage(kind .. ": --reason TEXT is required (recorded with the change)") end
    if percent > 0 and #pos ~= 2 then usage(kind .. ": a version ID is required") end
    print_route(require("flare.release.stages")[kind](pos[1], pos[2], {percent = percent,
      reason = f.reason, by = f.by, registry = o.registry}))
    await_gateway(pos[1], o)
    return 0
  end
end

commands.canary = share_command("canary")
commands.shadow = share_command("shadow")

function commands.rollout(args, o)
  local alerts = require("flare.release.alerts")
  local spec = {steps = "value", hold = "value", reason = "value", by = "value", force = "bool"}
  for flag in pairs(alerts.flags) do spec[flag] = "value" end
  local pos, f = parse(args, spec, "rollout")
  if #pos ~= 2 then usage("rollout: FAMILY and a version ID are required") end
  local rollout = require("flare.release.rollout")
  local thresholds = {}
  for flag, key in pairs(alerts.flags) do
    if f[flag] then
      thresholds[key] = tonumber(f[flag])
      if not thresholds[key] then
        usage("rollout: --" .. flag .. " expects a number, got '" .. f[flag] .. "'")
      end
    end
  end
  if not (thresholds.max_error_rate_pct or thresholds.max_p95_ms or thresholds.min_feedback) then
    thresholds.max_error_rate_pct = 5
  end
  local t0 = flare.clock()
  local r = rollout.run(pos[1], pos[2], {steps = f.steps, registry = o.registry, by = f.by,
    hold_s = f.hold and rollout.parse_duration(f.hold, "flare release rollout --hold") or nil,
    reason = f.reason or "staged rollout", force = f.force, alerts = thresholds,
    on_step = function(step)
      io.stdout:write(string.format("%6.1fs  %s at %g%%%s%s\n", flare.clock() - t0, pos[2],
        step.percent, step.percent == 100 and " (production)" or "",
        step.applied_by_gateway and "" or " (no running gateway of " .. pos[1] ..
          " took the change within 10 s: alerts see only requests it logs)"))
      io.stdout:flush()
    end})
  for _, s in ipairs(r.steps) do
    local m = s.metrics
    io.stdout:write(string.format("  step %g%%: held %.1fs, %s\n", s.percent, s.held_s,
      m and string.format("%d requests, error rate %.1f%%, p95 %.1f ms", m.n,
        100 * m.error_rate, m.p95_ms) or "no requests logged"))
  end
  if not r.ok then
    local route = require("flare.release.stages").route(pos[1], {registry = o.registry})
    io.stdout:write(string.format("rollout of %s stopped after %.1fs: %s; production is %s\n",
      r.id, r.elapsed_s, r.reason, route.production and route.production.id or "-"))
    return 1
  end
  io.stdout:write(string.format("%s is production after %.1fs\n", r.id, r.elapsed_s))
  return 0
end

function commands.route(args, o)
  local pos = parse(args, {}, "route")
  if #pos ~= 1 then usage("route: one FAMILY is required") end
  print_route(require("flare.release.stages").route(pos[1], {registry = o.registry}))
  return 0
end

function commands.feedback(args, o)
  local pos = parse(args, {}, "feedback")
  if #pos ~= 2 then usage("feedback: REQUEST_ID and SCORE are required") end
  local score = tonumber(pos[2])
  if not score then usage("feedback: SCORE must be a number, got '" .. pos[2] .. "'") end
  local version = require("flare.release.gateway").feedback(pos[1], score,
    {registry = o.registry})
  io.stdout:write("feedback ", pos[2], " on ", pos[1], " (", tostring(version), ")\n")
  return 0
end

function commands.metrics(args, o)
  local pos, f = parse(args, {window = "value", json = "bool"}, "metrics")
  if #pos ~= 1 then usage("metrics: one FAMILY is required") end
  require("flare.release.stages").route(pos[1], {registry = o.registry})  -- a known family
  local rows = require("flare.release.gateway").metrics(pos[1], {registry = o.registry,
    window_s = tonumber(f.window) or 60})
  if f.json then print_json(rows) return 0 end
  io.stdout:write(string.format("%-20s %8s %9s %9s %9s %8s %10s %9s\n", "VERSION",
    "REQUESTS", "P50 MS", "P95 MS", "P99 MS", "ERRORS", "TOKENS/REQ", "FEEDBACK"))
  for _, m in ipairs(rows) do
    io.stdout:write(string.format("%-20s %8d %9.2f %9.2f %9.2f %7.2f%% %10.1f %9s\n",
      m.version, m.n, m.p50_ms, m.p95_ms, m.p99_ms, 100 * m.error_rate, m.tokens_per_request,
      m.mean_feedback and string.format("%.3f", m.mean_feedback) or "-"))
  end
  return 0
end

function commands.gate(args, o)
  local pos, f = parse(args, {suite = "value", baseline = "value", candidate = "value",
    gates = "value", out = "value"}, "gate")
  if #pos > 0 then usage("gate: unexpected argument '" .. pos[1] .. "'") end
  for _, k in ipairs({"suite", "baseline", "candidate"}) do
    if not f[k] then usage("gate: --" .. k .. " is required") end
  end
  local gate = require("flare.release.gate")
  local report = gate.gate{suite = f.suite, baseline = f.baseline, candidate = f.candidate,
    gates = f.gates and read_json_file(f.gates, "--gates") or nil, out_dir = f.out,
    registry = o.registry}
  io.stdout:write(gate.summary(report), "\n")
  return report.passed and 0 or 1
end

function commands.drift(args, o)
  local pos, f = parse(args, {train = "value", live = "value", ["max-distance"] = "value",
    family = "value", window = "value"}, "drift")
  if #pos > 0 then usage("drift: unexpected argument '" .. pos[1] .. "'") end
  if not f.train or (not f.live) == (not f.family) then
    usage("drift: --train and one of --live FILE or --family FAMILY are required")
  end
  local drift = require("flare.release.drift")
  local opts = {max_distance = tonumber(f["max-distance"])}
  local r
  if f.family then
    r = drift.drift(drift.read_texts(f.train, "--train"), drift.live_prompts(f.family,
      {registry = o.registry, window_s = tonumber(f.window)}), opts)
  else
    r = drift.drift_files(f.train, f.live, opts)
  end
  io.stdout:write(drift.drift_summary(r), "\n")
  return r.alert and 1 or 0
end

function commands.collapse(args)
  local pos, f = parse(args, {candidate = "value", parent = "value",
    ["max-length-growth"] = "value", ["max-distinct-drop"] = "value"}, "collapse")
  if #pos > 0 then usage("collapse: unexpected argument '" .. pos[1] .. "'") end
  if not f.candidate or not f.parent then
    usage("collapse: --candidate and --parent are required")
  end
  local drift = require("flare.release.drift")
  local r = drift.collapse_files(f.candidate, f.parent, {
    max_length_growth = tonumber(f["max-length-growth"]),
    max_distinct_drop = tonumber(f["max-distinct-drop"])})
  io.stdout:write(drift.collapse_summary(r), "\n")
  return r.alert and 1 or 0
end

return function(args)
  local o = {}
  local rest = {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--registry" then
      o.registry = args[i + 1]
      if not o.registry then usage("--registry needs a path") end
      i = i + 1
    elseif a:match("^%-%-registry=") then
      o.registry = a:sub(12)
    elseif a == "-h" or a == "--help" or a == "help" then
      io.stdout:write(USAGE, "\n")
      return 0
    else
      rest[#rest + 1] = a
    end
    i = i + 1
  end
  local name = table.remove(rest, 1)
  if not name then usage("a command is required") end
  local cmd = commands[name]
  if not cmd then
    local names = {}
    for k in pairs(commands) do names[#names + 1] = k end
    table.sort(names)
    usage("unknown command '" .. name .. "'" .. errors.suggest(name, names))
  end
  return cmd(rest, o)
end
