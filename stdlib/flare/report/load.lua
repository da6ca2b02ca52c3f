-- flare.report.load: a run directory read into series and statistics.
--
--   load.load(dir) -> run: run.config (config.json), run.rows (metrics.jsonl lines),
--       run.series[name] = {steps = {...}, values = {...}}, run.metric_names (main metric
--       first), run.main_metric, run.checkpoints (checkpoints.jsonl lines), run.timings
--   load.main_metric(names, config) -> the metric the recipe named in config.json
--       (main_metric), else "reward" or "reward_mean", else the first name
--   load.stats(values) -> {count, total, mean, min, max, p50, p90, first, last}
--
-- A metric is any key of a metrics line whose value is a finite number, except
-- step and the timestamps (time, timestamp, wall_time). A line with a `stage` (a
-- flare.pipeline run) files its metrics as "<stage>/<metric>", one curve per stage;
-- run.stages lists the stages in the order they appear.
local jsonl = require("flare.jsonl")

local M = {}

local not_metrics = { step = true, time = true, timestamp = true, wall_time = true }

local function is_finite(v)
  return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge
end
M.is_finite = is_finite

-- What a recipe's own curve is called when it does not name one.
local preferred = { "reward", "reward_mean" }

-- stages: the stage names in order, when the metrics are filed per stage; the main metric is
-- then the first stage's series of that name.
function M.main_metric(names, config, stages)
  local present = {}
  for _, n in ipairs(names) do present[n] = true end
  local function find(metric)
    if present[metric] then return metric end
    for _, st in ipairs(stages or {}) do
      if present[st .. "/" .. metric] then return st .. "/" .. metric end
    end
  end
  local named = type(config) == "table" and config.main_metric
  if type(named) == "string" and find(named) then return find(named) end
  for _, n in ipairs(preferred) do
    if find(n) then return find(n) end
  end
  return names[1]
end

local function quantile(sorted, q)
  if #sorted == 0 then return nil end
  local pos = 1 + (#sorted - 1) * q
  local lo = math.floor(pos)
  local hi = math.min(lo + 1, #sorted)
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo)
end

function M.stats(values)
  local sorted, sum = {}, 0
  for i, v in ipairs(values) do
    sorted[i] = v
    sum = sum + v
  end
  table.sort(sorted)
  return {
    count = #sorted, total = sum, mean = #sorted > 0 and sum / #sorted or nil,
    min = sorted[1], max = sorted[#sorted],
    p50 = quantile(sorted, 0.5), p90 = quantile(sorted, 0.9),
    last = values[#values], first = values[1],
  }
end

function M.range_of(list)
  local lo, hi = math.huge, -math.huge
  for _, v in ipairs(list) do
    if v < lo then lo = v end
    if v > hi then hi = v end
  end
  return lo, hi
end

-- A range that is never empty: a constant series gets room around it.
function M.padded_range(lo, hi)
  if hi > lo then return lo, hi end
  local pad = math.abs(lo) * 0.1
  if pad == 0 then pad = 1 end
  return lo - pad, hi + pad
end

local function is_duration(name)
  return name:match("_s$") or name:match("_seconds$") or name:match("_ms$")
end

-- Series of every metric; steps default to the line number when a line has none.
local function build_series(rows, config)
  local series, names, stages, stage_index = {}, {}, {}, {}
  for i, row in ipairs(rows) do
    local step = is_finite(row.step) and row.step or i
    local prefix = ""
    if type(row.stage) == "string" then
      prefix = row.stage .. "/"
      if not stage_index[row.stage] then
        stages[#stages + 1] = row.stage
        stage_index[row.stage] = #stages
      end
    end
    for k, v in pairs(row) do
      if type(k) == "string" and not not_metrics[k] and is_finite(v) then
        local s = series[prefix .. k]
        if not s then
          s = { steps = {}, values = {} }
          series[prefix .. k] = s
          names[#names + 1] = prefix .. k
        end
        s.steps[#s.steps + 1] = step
        s.values[#s.values + 1] = v
      end
    end
  end
  local function order(n)  -- pipeline order of the stages, then by name
    local st = n:match("^(.*)/")
    return (st and stage_index[st]) or 0
  end
  table.sort(names, function(a, b)
    if order(a) ~= order(b) then return order(a) < order(b) end
    return a < b
  end)
  local main = M.main_metric(names, config, stages)
  local ordered = { main }
  for _, n in ipairs(names) do
    if n ~= main then ordered[#ordered + 1] = n end
  end
  if main == nil then ordered = {} end
  return series, ordered, main, stages
end

local function build_timings(rows, series, names)
  local t = { durations = {} }
  local times = {}
  for _, row in ipairs(rows) do
    if is_finite(row.time) then times[#times + 1] = row.time end
  end
  if #times >= 2 then
    t.wall_s = times[#times] - times[1]
    local gaps = {}
    for i = 2, #times do gaps[#gaps + 1] = times[i] - times[i - 1] end
    t.step_interval = M.stats(gaps)
  end
  for _, n in ipairs(names) do
    if is_duration(n) then
      t.durations[#t.durations + 1] = { name = n, stats = M.stats(series[n].values) }
    end
  end
  return t
end

function M.load(dir)
  if type(dir) ~= "string" or dir == "" then
    error("flare.report.load: a run directory is required", 2)
  end
  dir = dir:gsub("/+$", "")
  local config_text = require("flare.fs").read_file(dir .. "/config.json")
  local rows = jsonl.read(dir .. "/metrics.jsonl")
  if config_text == nil and rows == nil then
    error(dir .. " is not a run directory: it has neither config.json nor metrics.jsonl", 0)
  end
  local config = {}
  if config_text then
    local ok, value = pcall(require("flare.json").decode, config_text)
    if not ok then error(dir .. "/config.json: " .. tostring(value), 0) end
    if type(value) ~= "table" then error(dir .. "/config.json: expected a JSON object", 0) end
    config = value
  end
  rows = rows or {}
  local series, names, main, stages = build_series(rows, config)
  local run = {
    dir = dir,
    name = type(config.name) == "string" and config.name or dir:match("([^/]+)/[^/]+$") or dir,
    config = config,
    rows = rows,
    series = series,
    metric_names = names,
    main_metric = main,
    stages = stages,
    checkpoints = jsonl.read(dir .. "/checkpoints.jsonl") or {},
  }
  run.timings = build_timings(rows, series, names)
  return run
end

return M
