-- flare.release.gate: the dev -> staging promotion gates on a frozen suite's results.
--
--   gate.gate{suite = suite | path, baseline = results | path, candidate = results | path,
--     gates = {...}, out_dir = DIR, registry =} -> report
-- gates (defaults):
--   metric = "correct"           the per-item score compared (results items' field)
--   margin = 0                   the aggregate must improve by at least this much, and the
--                                95% CI of a paired bootstrap must exclude zero
--   resamples = 2000, seed = 0   the bootstrap's (flare.release.stats)
--   slice_threshold = 0.05       no slice may regress by more than this
--   slices = {name = {max_regression =}}   per-slice thresholds
--   safety_critical = {names}    with the suite's safety_critical slices: any regression blocks
--   max_tokens_per_request       the candidate's mean tokens (prompt + completion) per request
--   max_p95_latency_ms           the candidate's p95 latency
-- The report: passed, failed (gate names), gates (each {name, passed, detail}), aggregate,
-- slices (each with baseline, candidate, diff, ci_lo, ci_hi, threshold), cost, latency.
-- With out_dir it is written as gate.json and gate.html there.
local json = require("flare.json")
local fs = require("flare.fs")
local args = require("flare.args")
local stats = require("flare.release.stats")
local suite_mod = require("flare.release.suite")
local errors = require("flare.release.errors")

local M = {}
local WHO = "flare.release.gate"

local gates_spec = {metric = "string", margin = "number", resamples = "integer", seed = "integer",
  slice_threshold = "number", slices = "table", safety_critical = "table",
  max_tokens_per_request = "number", max_p95_latency_ms = "number", confidence = "number"}

local function load_results(v, what)
  if type(v) == "string" then
    local text = fs.read_file(v)
    if not text then errors.not_found(what .. " results: no file " .. v) end
    local ok, r = pcall(json.decode, text)
    if not ok or type(r) ~= "table" then
      errors.invalid(WHO, what .. " results " .. v .. " is not a JSON object")
    end
    v = r
  end
  if type(v) ~= "table" or type(v.items) ~= "table" then
    errors.invalid(WHO, "option '" .. what .. "' must be suite results {suite_id =, items =}")
  end
  if type(v.suite_id) ~= "string" then
    errors.invalid(WHO, what .. " results carry no suite_id (run them with suite:run)")
  end
  return v
end

-- The base model of a version in the registry: the one named by `registry` (a version it
-- lacks is an error), else the default one when it exists (a version it lacks is skipped).
local function base_of(version, registry_path)
  if type(version) ~= "string" then return nil end
  local registry = require("flare.release.registry")
  if registry_path then return registry.get(version, {registry = registry_path}).base_model end
  local ok, path = pcall(require("flare.release.store").default_path)
  if not ok or not fs.exists(path) then return nil end
  local found, record = pcall(registry.get, version, {registry = path})
  return found and record.base_model or nil
end

local function values(suite, results, metric, what)
  local by_id = {}
  for i, r in ipairs(results.items) do
    if type(r) ~= "table" or r.id == nil then
      errors.invalid(WHO, what .. " results items[" .. i .. "] has no id")
    end
    by_id[r.id] = r
  end
  local v = {}
  for i, item in ipairs(suite.items) do
    local r = by_id[item.id]
    if not r then
      errors.refused(what .. " results lack suite item " .. item.id .. " (they cover " ..
        #results.items .. " of " .. #suite.items .. " items)")
    end
    local x = tonumber(r[metric])
    if x == nil then
      errors.invalid(WHO, what .. " results item " .. item.id .. " has no numeric '" ..
        metric .. "'")
    end
    v[i] = x
  end
  return v, by_id
end

local function subset(xs, suite, members)
  local out = {}
  for i, item in ipairs(suite.items) do
    if members[item.id] then out[#out + 1] = xs[i] end
  end
  return out
end

local function fmt(x) return string.format("%.4f", x) end

M.options_spec = {suite = "string|table", baseline = "string|table",
  candidate = "string|table", gates = "nil|table", out_dir = "nil|string", registry = "nil|string"}

function M.gate(o)
  o = args.options(o, M.options_spec, WHO)
  for _, k in ipairs({"suite", "baseline", "candidate"}) do
    if o[k] == nil then errors.invalid(WHO, "option '" .. k .. "' is required") end
  end
  local g = args.options(o.gates, gates_spec, WHO .. " gates")
  local suite = type(o.suite) == "table" and o.suite.items and o.suite or suite_mod.load(o.suite)
  local base = load_results(o.baseline, "baseline")
  local cand = load_results(o.candidate, "candidate")
  for what, r in pairs({baseline = base, candidate = cand}) do
    if r.suite_id ~= suite.id then
      errors.refused("different suites: the " .. what .. " results are of " .. r.suite_id ..
        ", the suite is " .. suite.id .. " (results are comparable only on one frozen suite)")
    end
  end
  local base_model = base_of(base.version, o.registry)
  local cand_model = base_of(cand.version, o.registry)
  if base_model and cand_model and base_model ~= cand_model then
    errors.refused("version from another base: baseline " .. base.version .. " builds on " ..
      base_model .. ", candidate " .. cand.version .. " on " .. cand_model)
  end
  local metric = g.metric or "correct"
  local boot = {resamples = g.resamples or 2000, seed = g.seed or 0,
    confidence = g.confidence or 0.95}
  local bv = values(suite, base, metric, "baseline")
  local cv, cand_by_id = values(suite, cand, metric, "candidate")
  local report = {suite_id = suite.id, suite_name = suite.name, baseline = base.version,
    candidate = cand.version, metric = metric, n = #suite.items, bootstrap = boot, gates = {},
    failed = {}}
  local function record(name, passed, detail)
    report.gates[#report.gates + 1] = {name = name, passed = passed, detail = detail}
    if not passed then report.failed[#report.failed + 1] = name end
  end

  local margin = g.margin or 0
  local agg = stats.paired_bootstrap(bv, cv, boot)
  local sign = stats.sign_test(bv, cv)
  report.aggregate = {baseline = stats.mean(bv), candidate = stats.mean(cv), diff = agg.diff,
    ci_lo = agg.lo, ci_hi = agg.hi, margin = margin, sign_test_p = sign.p, better = sign.better,
    worse = sign.worse, ties = sign.ties}
  record("aggregate", agg.diff >= margin and agg.lo > 0, string.format(
    "%s %s -> %s: diff %+.4f (95%% CI %+.4f .. %+.4f), needs >= %+.4f with the CI above 0; " ..
    "sign test p = %.4g (%d better, %d worse)", metric, fmt(report.aggregate.baseline),
    fmt(report.aggregate.candidate), agg.diff, agg.lo, agg.hi, margin, sign.p, sign.better,
    sign.worse))

  local safety = {}
  for _, name in ipairs(g.safety_critical or {}) do safety[name] = true end
  local known = {}
  for _, sl in ipairs(suite.slices) do known[sl.name] = true end
  for name in pairs(safety) do
    if not known[name] then
      local names = {}
      for k in pairs(known) do names[#names + 1] = k end
      errors.invalid(WHO, "gates.safety_critical names unknown slice '" .. name .. "'" ..
        errors.suggest(name, names))
    end
  end
  for name in pairs(g.slices or {}) do
    if not known[name] then
      local names = {}
      for k in pairs(known) do names[#names + 1] = k end
      errors.invalid(WHO, "gates.slices names unknown slice '" .. tostring(name) .. "'" ..
        errors.suggest(name, names))
    end
  end
  report.slices = {}
  for i, sl in ipairs(suite.slices) do
    local b, c = subset(bv, suite, sl.members), subset(cv, suite, sl.members)
    local critical = sl.safety_critical or safety[sl.name] == true
    local per = (g.slices or {})[sl.name] or {}
    local threshold = critical and 0 or (per.max_regression or g.slice_threshold or 0.05)
    local bs = stats.paired_bootstrap(b, c, {resamples = boot.resamples, seed = boot.seed + i,
      confidence = boot.confidence})
    local s = {name = sl.name, n = #b, baseline = stats.mean(b), candidate = stats.mean(c),
      diff = bs.diff, ci_lo = bs.lo, ci_hi = bs.hi, threshold = threshold,
      safety_critical = critical}
    s.passed = #b > 0 and s.diff >= -threshold - 1e-12
    if critical then s.passed = #b > 0 and s.diff >= 0 end
    report.slices[#report.slices + 1] = s
    record("slice:" .. sl.name, s.passed, #b == 0 and "the slice holds no items" or string.format(
      "%s %s -> %s: diff %+.4f (95%% CI %+.4f .. %+.4f, n=%d), %s", metric, fmt(s.baseline),
      fmt(s.candidate), s.diff, s.ci_lo, s.ci_hi, s.n, critical and
      "safety-critical: any regression blocks" or string.format("may regress by at most %.4f",
        threshold)))
  end

  local tokens, lat = {}, {}
  for i, item in ipairs(suite.items) do
    local r = cand_by_id[item.id]
    tokens[i] = tonumber(r.tokens) or ((tonumber(r.prompt_tokens) or 0) +
      (tonumber(r.completion_tokens) or 0))
    lat[i] = tonumber(r.latency_ms)
  end
  report.cost = {tokens_per_request = stats.mean(tokens), budget = g.max_tokens_per_request}
  if g.max_tokens_per_request then
    record("cost", report.cost.tokens_per_request <= g.max_tokens_per_request, string.format(
      "%.1f tokens per request, budget %.1f", report.cost.tokens_per_request,
      g.max_tokens_per_request))
  end
  local sorted = {}
  for _, x in ipairs(lat) do sorted[#sorted + 1] = x end
  table.sort(sorted)
  report.latency = {p50_ms = stats.percentile(sorted, 0.5), p95_ms = stats.percentile(sorted, 0.95),
    budget_p95_ms = g.max_p95_latency_ms}
  if g.max_p95_latency_ms then
    if #sorted < #suite.items then
      record("latency", false, "the candidate results lack latency_ms on " ..
        (#suite.items - #sorted) .. " items")
    else
      record("latency", report.latency.p95_ms <= g.max_p95_latency_ms, string.format(
        "p95 %.1f ms, budget %.1f ms", report.latency.p95_ms, g.max_p95_latency_ms))
    end
  end
  report.passed = #report.failed == 0
  if o.out_dir then
    fs.mkdir_p(o.out_dir)
    report.json_path = o.out_dir .. "/gate.json"
    report.html_path = o.out_dir .. "/gate.html"
    fs.write_file_atomic(report.json_path,
      json.encode(report, {sort_keys = true, pretty = true}) .. "\n")
    fs.write_file_atomic(report.html_path, require("flare.release.gate_html").render(report))
  end
  return report
end

function M.summary(report)
  local lines = {string.format("gate %s: %s vs %s on %s (%d items)", report.passed and "PASSED" or
    "FAILED", tostring(report.candidate or "candidate"), tostring(report.baseline or "baseline"),
    report.suite_id, report.n)}
  for _, g in ipairs(report.gates) do
    lines[#lines + 1] = string.format("  %-4s %-22s %s", g.passed and "ok" or "FAIL", g.name,
      g.detail)
  end
  if report.json_path then
    lines[#lines + 1] = "wrote " .. report.json_path .. " and " .. report.html_path
  end
  return table.concat(lines, "\n")
end

return M
