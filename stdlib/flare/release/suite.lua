-- flare.release.suite: a frozen evaluation suite. Its tasks and seeds, verifiers, sampling
-- parameters, slices and the problems they generate are hashed into suite.id; results carry
-- the id, and the gate refuses to compare results of different ids.
--
--   local s = suite.load{name = "arith", tasks = {{task = "addition", seed = 1, n = 40,
--       options = {digits = 2}}, ...}, sampling = {temperature = 0, max_tokens = 16, seed = 0},
--       slices = {{name = "addition", task = "addition"}, {name = "short", max_prompt_chars = 6},
--                 {name = "sort", task = "sort", safety_critical = true}}}
--   (or suite.load("suite.json"))
--   s.id, s.items ({id =, task =, prompt =, answer =, slices = {names}}), s.slices
--   s:run{sampler =, version =, out = PATH} -> results {suite_id =, version =, items = {{id =,
--       correct = 0|1, reward =, prompt_tokens =, completion_tokens =, tokens =, latency_ms =,
--       text =}}}
-- latency_ms is the server's processing time of the request (its server-processing-time
-- header), or the batch's wall time over its requests when the server sends none.
-- A slice selects items by task (a name or a list), min_prompt_chars, max_prompt_chars; the
-- aggregate is every item.
local json = require("flare.json")
local fs = require("flare.fs")
local args = require("flare.args")
local tasks = require("flare.tasks")
local errors = require("flare.release.errors")

local M = {}
local Suite = {}
Suite.__index = Suite

local WHO = "flare.release.suite"

local function source_sha256(module)
  local path = package.searchpath(module, package.path)
  return path and fs.sha256_file(path) or nil
end

local function check_spec(spec)
  if type(spec) ~= "table" then errors.invalid(WHO, "a suite is a table or a JSON file path") end
  args.options(spec, {name = "string", tasks = "table", sampling = "nil|table",
    slices = "nil|table"},
    WHO)
  if type(spec.name) ~= "string" or spec.name == "" then
    errors.invalid(WHO, "field 'name' is required")
  end
  if type(spec.tasks) ~= "table" or #spec.tasks == 0 then
    errors.invalid(WHO, "field 'tasks' must list at least one {task =, seed =, n =}")
  end
  for i, t in ipairs(spec.tasks) do
    local where = "field 'tasks[" .. i .. "]"
    if type(t) ~= "table" then errors.invalid(WHO, where .. "' must be a table") end
    args.options(t, {task = "string", seed = "integer", n = "integer", options = "nil|table"},
      WHO .. " tasks[" .. i .. "]")
    if type(t.task) ~= "string" then errors.invalid(WHO, where .. ".task' is required") end
    if type(t.seed) ~= "number" then errors.invalid(WHO, where .. ".seed' is required (frozen)") end
    if type(t.n) ~= "number" or t.n < 1 then errors.invalid(WHO, where .. ".n' must be >= 1") end
    local make = tasks[t.task]
    if type(make) ~= "function" or t.task == "rng" or t.task == "get" or t.task == "evaluate" then
      errors.invalid(WHO, where .. ".task': unknown task '" .. t.task .. "'" ..
        errors.suggest(t.task, tasks.names) .. " (tasks: " .. table.concat(tasks.names, ", ") ..
          ")")
    end
  end
  args.options(spec.sampling, {temperature = "number", max_tokens = "integer", seed = "integer",
    top_p = "number"}, WHO .. " sampling")
  local seen = {}
  for i, sl in ipairs(spec.slices or {}) do
    args.options(sl, {name = "string", task = "string|table", min_prompt_chars = "integer",
      max_prompt_chars = "integer", safety_critical = "boolean"}, WHO .. " slices[" .. i .. "]")
    if type(sl.name) ~= "string" or sl.name == "" then
      errors.invalid(WHO, "field 'slices[" .. i .. "].name' is required")
    end
    if seen[sl.name] or sl.name == "aggregate" then
      errors.invalid(WHO, "field 'slices[" .. i .. "].name': '" .. sl.name .. "' is used twice " ..
        "(aggregate is reserved)")
    end
    seen[sl.name] = true
  end
end

local function in_slice(sl, item)
  if sl.task then
    local ok = false
    for _, t in ipairs(type(sl.task) == "table" and sl.task or {sl.task}) do
      if t == item.task then ok = true end
    end
    if not ok then return false end
  end
  if sl.min_prompt_chars and #item.prompt < sl.min_prompt_chars then return false end
  if sl.max_prompt_chars and #item.prompt > sl.max_prompt_chars then return false end
  return true
end

function M.load(spec)
  local source
  if type(spec) == "string" then
    source = spec
    local text = fs.read_file(spec)
    if not text then errors.not_found("missing suite: no file " .. spec) end
    local ok, v = pcall(json.decode, text)
    if not ok then errors.invalid(WHO, spec .. " is not JSON: " .. tostring(v)) end
    spec = v
  end
  check_spec(spec)
  local sampling = {temperature = 0, max_tokens = 16, seed = 0}
  for k, v in pairs(spec.sampling or {}) do sampling[k] = v end
  local items, problems_hash, verifiers = {}, {}, {}
  local tasks_source = source_sha256("flare.tasks")
  for _, t in ipairs(spec.tasks) do
    local o = {seed = t.seed}
    for k, v in pairs(t.options or {}) do o[k] = v end
    local task = tasks.get(t.task, o)
    verifiers[t.task] = {name = "flare.tasks." .. t.task, source_sha256 = tasks_source}
    for _, p in ipairs(task:sample(t.n)) do
      local item = {id = p.id, task = t.task, prompt = p.prompt, answer = p.answer,
        problem = p, verifier = task}
      items[#items + 1] = item
      problems_hash[#problems_hash + 1] = p.id .. "\0" .. p.prompt .. "\0" ..
        json.encode(p.answer == nil and json.null or p.answer) .. "\n"
    end
  end
  local slices = {}
  for _, sl in ipairs(spec.slices or {}) do
    local s = {name = sl.name, safety_critical = sl.safety_critical == true, members = {}}
    for _, item in ipairs(items) do
      if in_slice(sl, item) then s.members[item.id] = true end
    end
    slices[#slices + 1] = s
  end
  local frozen = {name = spec.name, tasks = spec.tasks, sampling = sampling,
    slices = spec.slices or {}, verifiers = verifiers,
    problems_sha256 = fs.sha256(table.concat(problems_hash))}
  local id = "suite-" .. fs.sha256(json.encode(frozen, {sort_keys = true})):sub(1, 16)
  return setmetatable({id = id, name = spec.name, spec = spec, sampling = sampling, items = items,
    slices = slices, source = source, frozen = frozen}, Suite)
end

-- Evaluates a sampler (one version's deployment or addon) on every item, one sample each.
function Suite:run(o)
  o = args.options(o, {sampler = "table", version = "nil|string", out = "nil|string"},
    WHO .. ":run")
  if not o.sampler then errors.invalid(WHO .. ":run", "option 'sampler' is required") end
  local prompts = {}
  for i, item in ipairs(self.items) do prompts[i] = item.prompt end
  local started = flare.clock()
  local groups = o.sampler:sample{prompts = prompts, n = 1, max_tokens = self.sampling.max_tokens,
    temperature = self.sampling.temperature, top_p = self.sampling.top_p, seed = self.sampling.seed}
  local wall = flare.clock() - started
  local out = {}
  for i, item in ipairs(self.items) do
    local c = (groups[i].completions or groups[i])[1] or {}
    local text = c.text or ""
    local m = c.metrics or {}
    local latency_s = m.server_processing_time
    if latency_s == nil then latency_s = wall / #self.items end
    local prompt_tokens = c.prompt_len or m.prompt_tokens or #item.prompt
    local completion_tokens = c.completion_len or (c.tokens and #c.tokens) or 0
    out[i] = {id = item.id, task = item.task, correct = item.verifier:verify(item.problem, text) and
      1 or 0, reward = item.verifier:reward(item.problem, text), text = text,
      prompt_tokens = prompt_tokens, completion_tokens = completion_tokens,
      tokens = prompt_tokens + completion_tokens,
      latency_ms = (tonumber(latency_s) or 0) * 1000}
  end
  local results = {suite_id = self.id, suite_name = self.name, version = o.version, items = out,
    created_at = os.date("!%Y-%m-%dT%H:%M:%SZ")}
  if o.out then
    fs.write_file_atomic(o.out, json.encode(results, {sort_keys = true, pretty = true}) .. "\n")
  end
  return results
end

-- Per-slice means of one results table ({suite_id =, slices = {name = {mean =, n =}}}), as
-- registry records keep them.
function Suite:summary(results, metric)
  metric = metric or "correct"
  local by_id = {}
  for _, r in ipairs(results.items) do by_id[r.id] = r end
  local function mean_of(members)
    local s, n = 0, 0
    for _, item in ipairs(self.items) do
      if not members or members[item.id] then
        local r = by_id[item.id]
        if r then s, n = s + (tonumber(r[metric]) or 0), n + 1 end
      end
    end
    return {mean = n > 0 and s / n or 0, n = n}
  end
  local out = {suite_id = self.id, metric = metric, slices = {aggregate = mean_of(nil)}}
  for _, sl in ipairs(self.slices) do out.slices[sl.name] = mean_of(sl.members) end
  return out
end

M.suite = M.load
return M
