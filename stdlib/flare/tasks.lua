-- flare.tasks: seeded problem generators with verifiers, for local runs that
-- need no data set.
--
--   local task = flare.tasks.get("addition", {seed = 0})   -- or tasks.addition{seed = 0}
--   local problems = task:sample(8)       -- {{id =, prompt =, answer =, ...}, ...}; answer
--                                         -- is a correct completion (tostring it) for
--                                         -- supervised warm-up
--   task:reward(problem, text)            -- 0..1
--   task:verify(problem, text)            -- true when the answer is fully correct
--
--   tasks.export(name, path, {n = 2000, seed = 0, ...task options}) -> {path =, rows =,
--     sha256 =}: a JSONL data set of n problems, one object per line: the problem's fields
--     (id, task, prompt, answer, ...: enough for task:verify on the row), `completion` (the
--     reference answer as text) and `messages` (user prompt, assistant answer) for SFT.
--
--   tasks.per_prompt_seeds(sampler) -> a sampler (sample, submit) whose seeded requests give
--     each prompt seeds of its own. A sampler gives sample j of every prompt of a request
--     seed + j - 1, so the j-th samples of all prompts share their random numbers (400
--     problems x 2 samples of one model read 0.27 to 0.64 correct by seed, against 0.44 to
--     0.48 with a seed per prompt). Prompt i is sent alone, seeded from (seed, i).
--     tasks.evaluate samples through it when given a seed.
--
-- Tasks: addition, reverse, sort, countdown, vowels (answer with vowels only).
local args = require("flare.args")
local verify = require("flare.verify")

local M = {}

-- Park-Miller minimal standard generator: exact in doubles, same stream everywhere.
local Rng = {}
Rng.__index = Rng

function M.rng(seed)
  seed = math.floor(tonumber(seed) or 0)
  local s = (seed * 48271 + 12345) % 2147483646 + 1
  local r = setmetatable({state = s}, Rng)
  for _ = 1, 3 do r:next() end
  return r
end

function Rng:next()
  self.state = (self.state * 16807) % 2147483647
  return self.state
end

function Rng:float() return (self:next() - 1) / 2147483646 end

-- Uniform integer in [lo, hi].
function Rng:int(lo, hi)
  return lo + math.floor(self:float() * (hi - lo + 1))
end

function Rng:choice(list) return list[self:int(1, #list)] end

function Rng:letters(n, alphabet)
  alphabet = alphabet or "abcdefghijklmnopqrstuvwxyz"
  local t = {}
  for i = 1, n do
    local k = self:int(1, #alphabet)
    t[i] = alphabet:sub(k, k)
  end
  return table.concat(t)
end

local function trim(s) return (tostring(s or ""):gsub("^%s+", ""):gsub("%s+$", "")) end
local function first_line(s) return trim((tostring(s or ""):match("^[^\n]*"))) end

local Task = {}
Task.__index = Task

function Task:sample(n)
  local out = {}
  for i = 1, n do
    self.count = self.count + 1
    local p = self.make(self.rng, self.opts)
    p.id = p.id or (self.name .. "-" .. self.seed .. "-" .. self.count)
    p.task = self.name
    out[i] = p
  end
  return out
end

function Task:reward(problem, text) return self.score(problem, text or "", self.opts) end

function Task:verify(problem, text)
  if self.check then return self.check(problem, text or "", self.opts) end
  return self:reward(problem, text) >= 1
end

local function new_task(name, defaults, make, score, check)
  local spec = {seed = "integer"}
  for k, v in pairs(defaults) do spec[k] = type(v) end
  return function(opts)
    opts = args.options(opts, spec, "flare.tasks." .. name)
    local o = {}
    for k, v in pairs(defaults) do o[k] = v end
    for k, v in pairs(opts) do o[k] = v end
    local seed = opts.seed or 0
    return setmetatable({name = name, seed = seed, rng = M.rng(seed), opts = o, count = 0,
      make = make, score = score, check = check}, Task)
  end
end

-- Addition: "17+25=" -> the last integer of the completion must be 42.
M.addition = new_task("addition", {digits = 2},
  function(rng, o)
    local hi = 10 ^ o.digits - 1
    local x, y = rng:int(0, hi), rng:int(0, hi)
    return {prompt = x .. "+" .. y .. "=", answer = x + y, x = x, y = y}
  end,
  function(p, text)
    local n = verify.last_number(first_line(text))
    return (n ~= nil and n == p.answer) and 1 or 0
  end)

-- Reverse a string; reward is the LCS ratio against the reversed string.
M.reverse = new_task("reverse", {min_len = 3, max_len = 6},
  function(rng, o)
    local s = rng:letters(rng:int(o.min_len, o.max_len))
    return {prompt = "reverse " .. s .. ":", answer = s:reverse(), input = s}
  end,
  function(p, text) return verify.lcs_ratio(first_line(text), p.answer) end,
  function(p, text) return first_line(text) == p.answer end)

-- Sort letters: "sort dbca:" -> "abcd"; LCS ratio reward, exact verify.
M.sort = new_task("sort", {min_len = 3, max_len = 6},
  function(rng, o)
    local s = rng:letters(rng:int(o.min_len, o.max_len))
    local chars = {}
    for c in s:gmatch(".") do chars[#chars + 1] = c end
    table.sort(chars)
    return {prompt = "sort " .. s .. ":", answer = table.concat(chars), input = s}
  end,
  function(p, text) return verify.lcs_ratio(first_line(text), p.answer) end,
  function(p, text) return first_line(text) == p.answer end)

-- Countdown: combine the numbers (each at most once) with + - * / to hit the target.
M.countdown = new_task("countdown", {count = 3, max_number = 12},
  function(rng, o)
    local nums = {}
    for i = 1, o.count do nums[i] = rng:int(1, o.max_number) end
    -- The target comes from a random expression over the numbers, so a solution exists.
    local value, expr = nums[1], tostring(nums[1])
    for i = 2, #nums do
      local op = rng:choice({"+", "-", "*"})
      if op == "-" and value - nums[i] <= 0 then op = "+" end
      if op == "+" then value = value + nums[i]
      elseif op == "-" then value = value - nums[i]
      else value = value * nums[i] end
      expr = "(" .. expr .. op .. nums[i] .. ")"
    end
    local shown = {}
    for i, n in ipairs(nums) do shown[i] = n end
    for i = #shown, 2, -1 do
      local j = rng:int(1, i)
      shown[i], shown[j] = shown[j], shown[i]
    end
    return {prompt = "use " .. table.concat(shown, " ") .. " to make " .. value .. ":",
      numbers = shown, target = value, answer = expr}
  end,
  function(p, text)
    local expr = first_line(text):gsub("=.*$", "")
    return verify.countdown(expr, p.numbers, p.target) and 1 or 0
  end)

-- Format task: answer with vowels only. Reward = vowel bytes among the first
-- `length` bytes of the completion, divided by `length` (so stopping early or
-- any other byte costs); verify = non-empty and vowels only.
local vowel = {a = true, e = true, i = true, o = true, u = true}
M.vowels = new_task("vowels", {prompt_len = 3, length = 4},
  function(rng, o)
    local s = rng:letters(o.prompt_len)
    -- A reference answer (for supervised warm-up): one vowel per position, from the prompt.
    local answer = {}
    for i = 1, o.length do
      local k = (s:byte((i - 1) % #s + 1) + i) % 5 + 1
      answer[i] = ("aeiou"):sub(k, k)
    end
    return {prompt = s .. ":", input = s, answer = table.concat(answer)}
  end,
  function(_, text, o)
    local n = 0
    for i = 1, math.min(#text, o.length) do
      if vowel[text:sub(i, i)] then n = n + 1 end
    end
    return n / o.length
  end,
  function(_, text) return #text > 0 and text:find("[^aeiou]") == nil end)

M.names = {"addition", "reverse", "sort", "countdown", "vowels"}

function M.per_prompt_seeds(sampler)
  -- A sampler without submit (only sample) is asked at once, one prompt after another.
  local function submit(q)
    if sampler.submit then return sampler:submit(q) end
    local groups = sampler:sample(q)
    return {wait = function() return groups end}
  end
  local wrapped = {}
  function wrapped.submit(_, p)
    if p.seed == nil or #p.prompts < 2 then return submit(p) end
    local futures = {}
    for i, prompt in ipairs(p.prompts) do
      local q = {}
      for k, v in pairs(p) do q[k] = v end
      -- Apart by at least n, below 2^31 (a 32-bit seed field).
      q.prompts, q.seed = {prompt}, (p.seed * 1000003 + (i - 1) * (p.n or 1)) % 2147000000
      futures[i] = submit(q)
    end
    return {wait = function()
      local groups = {}
      for i, f in ipairs(futures) do groups[i] = f:wait()[1] end
      return groups
    end}
  end
  function wrapped.sample(self, p) return self:submit(p):wait() end
  return wrapped
end

-- Samples n completions for each problem and scores them:
--   tasks.evaluate(sampler, task, problems, {n = 8, k = 1, max_tokens = 16, temperature = 1.0,
--     seed =})
--   -> {reward_mean =, correct_rate =, pass_at_k =, k =, problems =, samples =}
-- With a seed, each problem is sampled with seeds of its own (tasks.per_prompt_seeds), so
-- that the problems' samples are independent draws.
function M.evaluate(sampler, task, problems, o)
  o = o or {}
  local n, k = o.n or 8, o.k or 1
  if k > n then error("tasks.evaluate: k (" .. k .. ") must not exceed n (" .. n .. ")", 2) end
  local prompts = {}
  for i, p in ipairs(problems) do prompts[i] = p.prompt end
  if o.seed ~= nil then sampler = M.per_prompt_seeds(sampler) end
  local groups = sampler:sample{prompts = prompts, n = n, max_tokens = o.max_tokens or 16,
    temperature = o.temperature or 1.0, seed = o.seed}
  local pass_at_k = require("flare.grpo").pass_at_k
  local reward, correct, pass, samples = 0, 0, 0, 0
  for i, group in ipairs(groups) do
    local c = 0
    for _, s in ipairs(group.completions or group) do
      reward = reward + task:reward(problems[i], s.text)
      if task:verify(problems[i], s.text) then c = c + 1 end
      samples = samples + 1
    end
    correct = correct + c
    pass = pass + pass_at_k(n, c, k)
  end
  return {reward_mean = samples > 0 and reward / samples or 0,
    correct_rate = samples > 0 and correct / samples or 0,
    pass_at_k = #problems > 0 and pass / #problems or 0, k = k, problems = #problems,
      samples = samples}
end

function M.export(name, path, o)
  o = o or {}
  local opts = {}
  for k, v in pairs(o) do if k ~= "n" then opts[k] = v end end
  local task = M.get(name, opts)
  local json, fs = require("flare.json"), require("flare.fs")
  local lines = {}
  for i, p in ipairs(task:sample(o.n or 2000)) do
    local row = {}
    for k, v in pairs(p) do row[k] = v end
    row.completion = tostring(p.answer)
    row.messages = {{role = "user", content = p.prompt},
      {role = "assistant", content = row.completion}}
    lines[i] = json.encode(row, {sort_keys = true})
  end
  local text = table.concat(lines, "\n") .. "\n"
  local dir = path:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then fs.mkdir_p(dir) end
  fs.write_file_atomic(path, text)
  return {path = path, rows = #lines, sha256 = fs.sha256(text)}
end

function M.get(name, opts)
  local make = M[name]
  if type(make) ~= "function" or name == "rng" or name == "get" or name == "export" or
    name == "evaluate" then
    args.invalid("flare.tasks.get", "unknown task '" .. tostring(name) .. "' (tasks: " ..
      table.concat(M.names, ", ") .. ")")
  end
  return make(opts)
end

-- Arguments are checked before each call (a misuse raises invalid_argument naming the field);
-- the task constructors check their own options.
return args.checked(M, "flare.tasks", {
  rng = {"seed:nil|number|string"},
  per_prompt_seeds = {"sampler:table"},
  evaluate = {"sampler:table", "task:table", "problems:table", {"opts", {n = "integer",
    k = "integer",
    max_tokens = "integer", temperature = "number", seed = "integer"}}},
  get = {"name:string", "opts:nil|table"},
  export = {"name:string", "path:string", "opts:nil|table"},
})
