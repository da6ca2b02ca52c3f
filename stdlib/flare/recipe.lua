-- flare.recipe: the frame of an experiment script.
--
--   local run = flare.recipe{name = "grpo", config = {steps = 40, lr = 1e-3, task = "vowels"}}
--
-- Command line (the script's arguments): --key=value or --flag / --no-flag set
-- config keys, typed by their defaults (number, string, boolean); unknown keys and
-- bad values are errors with a did-you-mean. Built in: --dry-run (print the
-- resolved config and the plan, create nothing), --resume[=DIR] (continue the
-- latest run of this name, or DIR), --runs-dir=DIR (default "runs" or
-- $FLARE_RUNS_DIR), --help.
--
--   run.config          resolved config          run.dry_run / run.resumed   booleans
--   run.dir             runs/<name>/<timestamp>/ (nil on a dry run); run.id = <timestamp>
--   run.start_step      1, or the step after the last checkpoint when resuming
--   run.state           the `state` of the last checkpoint (nil when starting fresh)
--   run:log{step =, ...}        appends to metrics.jsonl, prints a line, draws progress
--   run:checkpoint{step =, state =, ...}  appends to checkpoints.jsonl (fsync)
--   run:last_checkpoint()       the last checkpoint record or nil
--   run:steps()                 iterator over run.start_step .. config.steps
--   run:plan(lines)             prints the plan; returns run.dry_run
--   run:on_exit(fn)             same as flare.defer(fn)
--   run:record_data{path =, sha256 =, ...}  adds a data file to config.json's "data_files" list
--                               (flare.data calls it for every file it reads; the run is
--                               flare.recipe.current(), the last one this script made)
--   run:connect(opts)           flare.connect(), or the emulator named by $FLARE_EMULATOR_URL /
--                               $FLARE_EMULATOR_STATE_DIR
--   run:trainer(fw, deployment, o) -> trainer, syncer
--                               a trainer job (o: fw:trainer's options, plus name = the job id's
--                               prefix, default the run's name, and what = the exit step's
--                               label, "close <what>", default "trainer") with job_id
--                               <name>-<run.id>, hotloading onto `deployment` (its info), closed
--                               at exit; and a quiet flare.weight_syncer from it onto it
--
-- flare.recipe{main_metric = "reward", ...} names the metric `flare report` charts first
-- (written to config.json; without it the report looks for reward, then reward_mean).
local checks = require("flare.args")
local cleanup = require("flare.cleanup")
local format = require("flare.format")
local jsonl = require("flare.jsonl")
local modules = require("flare.modules")

local M = {}

local Run = {}
Run.__index = Run
local current_run

function M.current() return current_run end

local function config_error(message)
  flare.error{code = "config", message = message}
end

-- Levenshtein distance, for did-you-mean.
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = {[0] = i}
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

local builtin = {["dry-run"] = true, resume = true, ["runs-dir"] = true, help = true}

local function suggestion(key, defaults)
  local best, best_d
  local function consider(k)
    local d = distance(key, k)
    if not best_d or d < best_d then best, best_d = k, d end
  end
  for k in pairs(defaults) do consider(k) end
  for k in pairs(builtin) do consider(k) end
  if best and best_d <= math.max(2, math.floor(#key / 3)) then
    return " (did you mean --" .. best .. "?)"
  end
  return ""
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks, function(a, b) return tostring(a) < tostring(b) end)
  return ks
end

local function convert(key, text, default)
  local kind = type(default)
  if kind == "number" then
    local n = tonumber(text)
    if not n or n ~= n then
      config_error("--" .. key .. " expects a number, got '" .. tostring(text) .. "'")
    end
    return n
  elseif kind == "boolean" then
    if text == true or text == "true" or text == "1" or text == "yes" then return true end
    if text == false or text == "false" or text == "0" or text == "no" then return false end
    config_error("--" .. key .. " expects true or false, got '" .. tostring(text) .. "'")
  elseif kind == "string" then
    if text == true then config_error("--" .. key .. " expects a value: --" .. key .. "=...") end
    return text
  end
  config_error("config key '" .. key .. "' has a default of unsupported type " .. kind)
end

-- Parses the arguments into {overrides = {key = value}, dry_run =, resume =, runs_dir =, help =}.
function M.parse_args(args, defaults)
  local out = {overrides = {}}
  for _, a in ipairs(args) do
    if a:sub(1, 2) ~= "--" then
      config_error("unexpected argument '" .. a .. "' (options look like --key=value)")
    end
    local key, value = a:match("^%-%-([^=]+)=(.*)$")
    if not key then key, value = a:sub(3), true end
    local name = key:gsub("-", "_")
    if key == "dry-run" or key == "dry_run" then
      out.dry_run = value == true or convert(key, value, true)
    elseif key == "resume" then
      out.resume = value
    elseif key == "runs-dir" or key == "runs_dir" then
      if value == true then config_error("--runs-dir expects a value: --runs-dir=DIR") end
      out.runs_dir = value
    elseif key == "help" then
      out.help = true
    elseif defaults[name] ~= nil then
      out.overrides[name] = convert(key, value, defaults[name])
    elseif value == true and key:sub(1, 3) == "no-" and
      type(defaults[key:sub(4):gsub("-", "_")]) == "boolean" then
      out.overrides[(key:sub(4):gsub("-", "_"))] = false
    else
      config_error("unknown option --" .. key .. suggestion(name, defaults))
    end
  end
  return out
end

local json = function() return require("flare.json") end
local fs = function() return require("flare.fs") end

local function encode(v) return json().encode(v, {sort_keys = true}) end

-- The lines of a JSONL file ({} when it does not exist), by flare.jsonl's rule: a torn
-- last line (a crash mid-write) is skipped, any other bad line raises.
function M.read_jsonl(path)
  return jsonl.read(path) or {}
end

local function latest_run_dir(root)
  if not fs().is_dir(root) then return nil end
  local names = fs().list_dir(root)
  for i = #names, 1, -1 do
    local d = root .. "/" .. names[i]
    if fs().exists(d .. "/config.json") then return d end
  end
  return nil
end

local function print_help(o, defaults)
  local lines = {"usage: flare run " .. tostring(arg and arg[0] or o.name) .. " [--key=value ...]"}
  if o.description then lines[#lines + 1] = o.description end
  lines[#lines + 1] = "options (defaults):"
  for _, k in ipairs(sorted_keys(defaults)) do
    lines[#lines + 1] = string.format("  --%-24s %s", k:gsub("_", "-"), tostring(defaults[k]))
  end
  lines[#lines + 1] =
    "  --dry-run                  validate, print the config and the plan, create nothing"
  lines[#lines + 1] =
    "  --resume[=DIR]             continue the latest run (or DIR) after its last checkpoint"
  lines[#lines + 1] = "  --runs-dir=DIR             where runs are written (default: runs)"
  io.stdout:write(table.concat(lines, "\n"), "\n")
end

function M.new(o)
  if type(o) ~= "table" then
    checks.invalid("flare.recipe", "argument 'opts' must be a table, got " .. type(o))
  end
  if type(o.name) ~= "string" or not o.name:match("^[%w_.-]+$") then
    checks.invalid("flare.recipe", "option 'name' is required (letters, digits, _ . -)")
  end
  if o.main_metric ~= nil and type(o.main_metric) ~= "string" then
    checks.invalid("flare.recipe", "option 'main_metric' must be a metric name (a string)")
  end
  local defaults = o.config or {}
  local args = o.args or arg or {}
  local parsed = M.parse_args(args, defaults)
  local self = setmetatable({name = o.name, dry_run = parsed.dry_run == true, resumed = false,
    start_step = 1, is_tty = o.progress ~= false and fs().isatty(2), started = flare.clock(),
    steps_done = 0}, Run)
  if parsed.help then
    print_help(o, defaults)
    os.exit(0)
  end
  local config = {}
  for k, v in pairs(defaults) do config[k] = v end
  local runs_dir = parsed.runs_dir or os.getenv("FLARE_RUNS_DIR") or o.runs_dir or "runs"
  local root = runs_dir .. "/" .. o.name

  if parsed.resume then
    local dir = parsed.resume ~= true and parsed.resume or latest_run_dir(root)
    if not dir or not fs().exists(dir .. "/config.json") then
      config_error("--resume: no earlier run of '" .. o.name .. "' under " .. root ..
        (parsed.resume ~= true and (" (looked for " .. tostring(dir) .. "/config.json)") or ""))
    end
    local saved = json().decode(assert(fs().read_file(dir .. "/config.json")))
    for k, v in pairs(saved.config or {}) do
      if defaults[k] ~= nil then config[k] = v end
    end
    self.dir, self.resumed = dir, true
    if not self.dry_run then
      -- Lines appended after a torn one would be glued to it.
      jsonl.drop_torn_tail(dir .. "/metrics.jsonl")
      jsonl.drop_torn_tail(dir .. "/checkpoints.jsonl")
    end
    local last = self:last_checkpoint()
    if last then
      self.start_step = (tonumber(last.step) or 0) + 1
      self.state = last.state
    end
  end
  for k, v in pairs(parsed.overrides) do config[k] = v end
  self.config = config
  self.total_steps = o.steps_key ~= false and tonumber(config[o.steps_key or "steps"]) or nil

  local script = args[0] or (arg and arg[0])
  local meta = {name = o.name, config = config, seed = config.seed or 0,
    flare_version = flare.version, main_metric = o.main_metric,
    script = script, created_at = os.date("!%Y-%m-%dT%H:%M:%SZ"), args = {unpack(args)}}
  if script and fs().exists(script) then meta.script_sha256 = fs().sha256_file(script) end
  meta.modules = json().object(modules.record())
  meta.replay_of = modules.replay_of  -- set by `flare run --replay RUN_DIR`
  self.meta = meta
  current_run = self

  if self.dry_run then
    io.stdout:write("dry run: ", o.name, " (nothing is created)\nconfig: ",
      json().encode(config, {sort_keys = true, pretty = true}), "\n")
    return self
  end
  if not self.dir then
    fs().mkdir_p(root)
    local stamp = os.date("!%Y%m%d-%H%M%S")
    local dir, n = root .. "/" .. stamp, 1
    while fs().exists(dir) do
      n = n + 1
      dir = root .. "/" .. stamp .. "-" .. n
    end
    fs().mkdir_p(dir)
    self.dir = dir
    fs().write_file_atomic(dir .. "/config.json", json().encode(meta,
      {sort_keys = true, pretty = true}) .. "\n")
    cleanup.defer(function() self:record_late_modules() end, "record the run's modules")
  end
  self.id = self.dir:match("([^/]+)/*$")
  if self.resumed then
    io.stdout:write("resuming ", self.dir, " at step ", self.start_step, "\n")
  end
  return self
end

-- Modules required after flare.recipe{} join config.json's `modules` when the run ends
-- (only that field of the file is changed; the entries written at the start stay).
function Run:record_late_modules()
  local now = modules.record()
  local added = false
  for name in pairs(now) do added = added or self.meta.modules[name] == nil end
  if not added then return end
  local path = self.dir .. "/config.json"
  local saved = json().decode(assert(fs().read_file(path)))
  local merged = {}
  for name, e in pairs(type(saved.modules) == "table" and saved.modules or {}) do
    merged[name] = e
  end
  for name, e in pairs(now) do
    if merged[name] == nil then merged[name] = e end
  end
  saved.modules = json().object(merged)
  fs().write_file_atomic(path, json().encode(saved, {sort_keys = true, pretty = true}) .. "\n")
  self.meta.modules = saved.modules
end

function Run:plan(lines)
  if not self.dry_run then return false end
  io.stdout:write("plan:\n")
  for _, l in ipairs(lines or {}) do io.stdout:write("  ", tostring(l), "\n") end
  return true
end

function Run:last_checkpoint()
  if not self.dir then return nil end
  local all = M.read_jsonl(self.dir .. "/checkpoints.jsonl")
  return all[#all]
end

function Run:checkpoint(record)
  if type(record) ~= "table" or type(record.step) ~= "number" then
    error("run:checkpoint: a table with a numeric step is required", 2)
  end
  if self.dry_run then return end
  local r = {time = flare.time()}
  for k, v in pairs(record) do r[k] = v end
  fs().append_line(self.dir .. "/checkpoints.jsonl", encode(r), {fsync = true})
end

local function format_value(v)
  if type(v) == "number" then
    if v == math.floor(v) and math.abs(v) < 1e15 then return string.format("%d", v) end
    return string.format("%.4g", v)
  end
  return tostring(v)
end

function Run:progress_text(step)
  local total = self.total_steps
  local elapsed = flare.clock() - self.started
  local rate = self.steps_done > 0 and self.steps_done / elapsed or 0
  if not total then return string.format("step %d  %.2f step/s", step, rate) end
  local width = 24
  local done = math.max(0, math.min(width, math.floor(width * step / total)))
  local eta = rate > 0 and (total - step) / rate or 0
  return string.format("[%s%s] %d/%d %.2f step/s ETA %s", string.rep("#", done),
    string.rep("-", width - done), step, total, rate, format.duration(eta))
end

-- Metrics go to metrics.jsonl; the terminal gets one plain line per call and, on a
-- tty, a progress bar (stderr) under it.
function Run:log(metrics)
  if type(metrics) ~= "table" then error("run:log: expected a table", 2) end
  local r = {time = flare.time()}
  for k, v in pairs(metrics) do r[k] = v end
  if self.dir and not self.dry_run then fs().append_line(self.dir .. "/metrics.jsonl",
    encode(r)) end
  if metrics.step then self.steps_done = self.steps_done + 1 end
  local parts = {}
  if metrics.step then
    parts[1] = "step " .. format_value(metrics.step) .. (self.total_steps and ("/" ..
      self.total_steps) or "")
  end
  for _, k in ipairs(sorted_keys(metrics)) do
    local v = metrics[k]
    if k ~= "step" and (type(v) == "number" or type(v) == "string" or type(v) == "boolean") then
      parts[#parts + 1] = k .. "=" .. format_value(v)
    end
  end
  if self.is_tty then io.stderr:write("\r\27[K") end
  io.stdout:write(table.concat(parts, "  "), "\n")
  io.stdout:flush()
  if self.is_tty and metrics.step then
    io.stderr:write(self:progress_text(metrics.step))
    io.stderr:flush()
  end
end

function Run:steps()
  local step = self.start_step - 1
  local last = self.total_steps or math.huge
  return function()
    if step == self.start_step - 1 then
      self.started, self.steps_done = flare.clock(), 0  -- rate and ETA count loop time only
    end
    step = step + 1
    if step > last then
      if self.is_tty then io.stderr:write("\r\27[K") end
      return nil
    end
    return step
  end
end

-- flare.connect() for recipes: $FLARE_EMULATOR_URL (+ $FLARE_EMULATOR_API_KEY) attaches to a
-- running `flare serve`; $FLARE_EMULATOR_STATE_DIR keeps the in-process emulator's state
-- (deployments, buckets, trainer states) across runs, which --resume needs locally;
-- otherwise the FIREWORKS_* environment decides (see flare.connect).
function M.connect(opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  local url, dir = os.getenv("FLARE_EMULATOR_URL"), os.getenv("FLARE_EMULATOR_STATE_DIR")
  if url and url ~= "" then
    o.backend, o.base_url = "emulator", url
    o.api_key = o.api_key or os.getenv("FLARE_EMULATOR_API_KEY")
  elseif dir and dir ~= "" then
    o.backend, o.state_dir = "emulator", dir
  end
  return flare.connect(o)
end

-- A dry run may connect to read (list, get); creating or changing anything is the
-- script's to skip when run.dry_run is set.
function Run:connect(opts)
  return M.connect(opts)
end

-- The data pointer of the run: one entry per file (path + sha256), kept in config.json.
function Run:record_data(entry)
  if type(entry) ~= "table" or type(entry.path) ~= "string" or type(entry.sha256) ~= "string" then
    error("run:record_data: a table with path and sha256 strings is required", 2)
  end
  local function merge(list)
    for _, e in ipairs(list) do
      if e.path == entry.path and e.sha256 == entry.sha256 then return list end
    end
    list[#list + 1] = entry
    return list
  end
  self.meta.data_files = merge(self.meta.data_files or {})
  if self.dry_run or not self.dir then return end
  local path = self.dir .. "/config.json"
  local saved = json().decode(assert(fs().read_file(path)))
  saved.data_files = merge(saved.data_files or {})
  fs().write_file_atomic(path, json().encode(saved, {sort_keys = true, pretty = true}) .. "\n")
end

function Run:on_exit(fn, name)
  return cleanup.defer(fn, name)
end

function Run:trainer(fw, deployment, o)
  local opts = {hot_load_deployment_id = deployment.deployment_id,
    job_id = (o.name or self.name) .. "-" .. self.id}
  for k, v in pairs(o) do
    if k ~= "name" and k ~= "what" then opts[k] = v end
  end
  local t = fw:trainer(opts)
  self:on_exit(function() t:close() end, "close " .. (o.what or "trainer"))
  return t, require("flare.weight_syncer"){policy_client = t, deploy_mgr = fw.deployments,
    deployment_id = deployment.deployment_id, base_model = opts.base_model, quiet = true}
end

-- A one-line chart of a series, e.g. the reward curve: "▁▂▄▆█", over lo..hi (default:
-- the values' own range).
function M.sparkline(values, lo, hi)
  return format.sparkline(values, {lo = lo, hi = hi})
end

-- Arguments are checked before each call (a misuse raises invalid_argument naming the field).
local recipe_options = {name = "string", config = "table", args = "table", progress = "boolean",
  description = "string", runs_dir = "string", steps_key = "string|boolean", main_metric = "string"}
checks.checked(M, "flare.recipe", {
  new = {{"opts", recipe_options}},
  parse_args = {"args:table", "defaults:table"},
  read_jsonl = {"path:string"},
  current = {},
  connect = {"opts:nil|table"},
  sparkline = {"values:table", "lo:nil|number", "hi:nil|number"},
})
return setmetatable(M, {__call = checks.wrap(function(_, o) return M.new(o) end, "flare.recipe",
  {"recipe:table", {"opts", recipe_options}})})
