-- flare.pipeline: a recipe run as named stages (cold start, RL, rejection sampling, ...), each
-- recorded in the run directory with its outputs so a later run can start from any stage.
--
--   local run = flare.recipe{name = "r1", args = flare.pipeline.args(arg), config = {
--     from_stage = "", ...}}
--   local p = flare.pipeline{run = run, from_stage = run.config.from_stage, stages = {
--     {name = "cold_start", fixes = "the base never earns a reward", metric = "correct_rate",
--      run = function(ctx) ... return outputs end},     -- outputs: any JSON value
--     ...}}
--   if p:plan() then return end          -- dry run: the stages, which run and which are reused
--   p:run()                              -- runs the stages, then prints the stage map
--
-- Inside a stage's run(ctx):
--   ctx.name, ctx.index, ctx.run         the stage, its position, the recipe run
--   ctx.outputs[name]                    outputs earlier stages returned (this run or recorded)
--   ctx:log{step =, ...}                 run:log with stage = ctx.name (`flare report` draws
--                                        one curve per stage and metric: "<stage>/<metric>");
--                                        ctx.logger is the same as a function of the metrics
--   ctx:moved(before, after)             the stage's metric before and after it, as measured
--   ctx:trainer(fw, o)                   a trainer job of this stage (closed when the stage
--                                        ends), o = fw:trainer's options plus from = an earlier
--                                        ctx:save() output to start from
--   ctx:save(trainer, name)              save_state -> {job =, state =}, an output to start from
--   ctx:save_samples(name, samples)      -> name: a dataset as JSONL in the run directory, an
--                                        output; ctx:load_samples(name) reads it back
--
-- Records: <run dir>/stages.jsonl, one line per finished stage: {stage, outputs, metric,
-- before, after, time_s}. --resume skips the stages recorded there; --from-stage=NAME (which
-- implies --resume) reruns NAME and the stages after it on the recorded outputs of the ones
-- before. Metric lines of stages that rerun move to metrics.superseded.jsonl (nothing is lost).
local args = require("flare.args")
local cleanup = require("flare.cleanup")
local fs = require("flare.fs")
local json = require("flare.json")
local jsonl = require("flare.jsonl")

local M = {}
local Pipeline = {}
Pipeline.__index = Pipeline
local Stage = {}
Stage.__index = Stage

-- The script's arguments with --resume added when --from-stage is given without it.
function M.args(argv)
  local out, from, resume = {[0] = argv[0]}, false, false
  for i, a in ipairs(argv) do
    out[i] = a
    from = from or a:match("^%-%-from[-_]stage=") ~= nil
    resume = resume or a:match("^%-%-resume") ~= nil
  end
  if from and not resume then out[#out + 1] = "--resume" end
  return out
end

function M.new(o)
  if type(o.run) ~= "table" or type(o.stages) ~= "table" then
    args.invalid("flare.pipeline", "options 'run' (a flare.recipe run) and 'stages' are required")
  end
  local self = setmetatable({recipe = o.run, stages = o.stages, from = o.from_stage ~= "" and
    o.from_stage or nil, records = {}, outputs = {}}, Pipeline)
  local known = {}
  for i, s in ipairs(o.stages) do
    if type(s.name) ~= "string" or type(s.run) ~= "function" then
      args.invalid("flare.pipeline", "stages[" .. i .. "] needs a name and a run function")
    end
    known[s.name] = i
  end
  if self.from and not known[self.from] then
    local names = {}
    for i, s in ipairs(o.stages) do names[i] = s.name end
    flare.error{code = "config", message = "--from-stage: no stage '" .. self.from ..
      "' (stages: " .. table.concat(names, ", ") .. ")"}
  end
  self.first = self.from and known[self.from] or 1
  if self.recipe.dir and self.recipe.resumed then
    for _, r in ipairs(jsonl.read(self.recipe.dir .. "/stages.jsonl") or {}) do
      self.records[r.stage] = r
    end
  end
  if not self.from then  -- --resume: continue after the stages already recorded
    while self.stages[self.first] and self.records[self.stages[self.first].name] do
      self.first = self.first + 1
    end
  end
  for i = 1, self.first - 1 do
    local name = self.stages[i].name
    if not self.records[name] then
      flare.error{code = "config", message = "--from-stage=" .. tostring(self.from) ..
        ": stage '" .. name .. "' has no record in " .. tostring(self.recipe.dir) ..
        "/stages.jsonl"}
    end
    self.outputs[name] = self.records[name].outputs
  end
  return self
end

function Pipeline:plan()
  local lines = {}
  for i, s in ipairs(self.stages) do
    lines[i] = string.format("%d. %-12s %s  [fixes: %s]", i, s.name, i < self.first and
      "(recorded, reused)" or "", s.fixes or "")
  end
  return self.recipe:plan(lines)
end

-- Metric lines of the stages about to rerun go to metrics.superseded.jsonl.
function Pipeline:set_aside_metrics()
  local rerun = {}
  for i = self.first, #self.stages do rerun[self.stages[i].name] = true end
  local path = self.recipe.dir .. "/metrics.jsonl"
  local keep, moved = {}, {}
  for _, r in ipairs(jsonl.read(path) or {}) do
    local list = rerun[r.stage] and moved or keep
    list[#list + 1] = json.encode(r, {sort_keys = true})
  end
  if #moved == 0 then return end
  for _, line in ipairs(moved) do
    fs.append_line(self.recipe.dir .. "/metrics.superseded.jsonl", line, {fsync = true})
  end
  fs.write_file_atomic(path, #keep > 0 and (table.concat(keep, "\n") .. "\n") or "")
end

function Pipeline:run_stages()
  if self.recipe.resumed then self:set_aside_metrics() end
  for i = self.first, #self.stages do
    local s = self.stages[i]
    local ctx = setmetatable({name = s.name, index = i, run = self.recipe, outputs = self.outputs,
      handles = {}}, Stage)
    ctx.logger = function(metrics) ctx:log(metrics) end
    local started = flare.clock()
    io.stdout:write("== stage ", i, "/", #self.stages, ": ", s.name, "\n")
    local ok, outputs = pcall(s.run, ctx)
    for j = #ctx.handles, 1, -1 do  -- the stage's trainers close now; at exit if this fails
      local h = ctx.handles[j]
      if pcall(h.trainer.close, h.trainer) then h.deferred:cancel() end
    end
    if not ok then error(outputs, 0) end
    local record = {stage = s.name, outputs = outputs, metric = s.metric, before = ctx.before,
      after = ctx.after, time_s = flare.clock() - started, time = flare.time()}
    fs.append_line(self.recipe.dir .. "/stages.jsonl", json.encode(record, {sort_keys = true}),
      {fsync = true})
    self.records[s.name], self.outputs[s.name] = record, outputs
  end
end

local function figure(v) return type(v) == "number" and string.format("%.3f", v) or "-" end

-- The stage map: what each stage is for and what it moved.
function Pipeline:map_lines()
  local lines = {"stage map:"}
  for i, s in ipairs(self.stages) do
    local r = self.records[s.name] or {}
    lines[#lines + 1] = string.format("  %d. %-12s %-14s %s -> %s  (%s)%s", i, s.name,
      s.metric or "", figure(r.before), figure(r.after), r.time_s and
      string.format("%.0f s", r.time_s) or "not run", i < self.first and " recorded" or "")
    lines[#lines + 1] = "     fixes: " .. (s.fixes or "")
  end
  return lines
end

function Pipeline:run()
  self:run_stages()
  io.stdout:write(table.concat(self:map_lines(), "\n"), "\n")
end

function Stage:log(metrics)
  local m = {stage = self.name}
  for k, v in pairs(metrics) do m[k] = v end
  self.run:log(m)
end

function Stage:moved(before, after) self.before, self.after = before, after end

function Stage:trainer(fw, o)
  -- A new job per attempt: one left by a killed attempt holds half-trained weights.
  local attempt = string.format("%x", math.floor(flare.time() * 10) % 0x10000000)
  local opts = {job_id = (self.run.name .. "-" .. self.name .. "-" .. self.run.id .. "-" ..
    attempt):lower():gsub("[^%w-]", "-")}
  for k, v in pairs(o) do if k ~= "from" then opts[k] = v end end
  local t = fw:trainer(opts)
  self.handles[#self.handles + 1] = {trainer = t, deferred = cleanup.defer(function() t:close()
    end, "close " .. opts.job_id)}
  if o.from then t:load_state(t:resolve_checkpoint_path(o.from.state, o.from.job)) end
  return t
end

-- A stage's dataset as JSONL in the run directory (a sample a line); the file name (relative to
-- the run directory, so a resumed run finds it wherever it runs from) is the stage's output.
function Stage:save_samples(name, samples)
  local lines = {}
  for i, sample in ipairs(samples) do lines[i] = json.encode(sample, {sort_keys = true}) end
  fs.write_file_atomic(self.run.dir .. "/" .. name, table.concat(lines, "\n") ..
    (#lines > 0 and "\n" or ""))
  return name
end

function Stage:load_samples(name)
  local samples = jsonl.read(self.run.dir .. "/" .. name)
  if not samples then
    flare.error{code = "not_found", message = "stage dataset " .. self.run.dir .. "/" .. name ..
      " does not exist"}
  end
  return samples
end

function Stage:save(trainer, name)
  local state = name or self.name
  trainer:save_state(state)
  return {job = trainer.job_id, state = state}
end

local options = {run = "table", stages = "table", from_stage = "string"}
args.checked(M, "flare.pipeline", {args = {"argv:table"}, new = {{"opts", options}}})
return setmetatable(M, {__call = args.wrap(function(_, o) return M.new(o) end, "flare.pipeline",
  {"pipeline:table", {"opts", options}})})
