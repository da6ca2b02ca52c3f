-- flare.distill: rejection sampling from a teacher, and SFT datums from what it keeps.
--
--   local result = distill.rejection_sample{
--     sampler = teacher,            -- anything with sampler:sample{prompts =, n =, max_tokens =,
--                                   --   temperature =} -> groups[i] = list of completions
--     problems = {{id =, prompt =, ...}, ...},
--     verify = function(problem, text) return bool end,
--     k = 8,                        -- samples per prompt at most (rounded up to whole batches)
--     batch = 4,                    -- samples per prompt per round
--     want = 2,                     -- stop sampling a prompt once this many are accepted
--     max_tokens = 64, temperature = 1.0,
--     seed = nil,                   -- round r samples with seed + (r - 1) * batch: the same
--                                   --   completions whatever the timing (and retries)
--     out_dir = "runs/x/distill",   -- optional: JSONL shards + progress, resumed on rerun
--     shard_size = 1000, dedupe_ngram = 8, dedupe_overlap = 0.5,
--     dedupe_scope = "all",         -- or "prompt": duplicates only among one prompt's samples
--   }                               --   (short answers, e.g. numbers, repeat across prompts)
--   result.samples  accepted {id, prompt, completion, prompt_tokens, tokens}
--   result.stats    {prompts, samples, accepted, truncated, rejected, duplicates,
--                    acceptance_rate, completion_tokens, accepted_tokens,
--                    pass_rate_histogram = {["0.0-0.1"] = n, ...}, solved_prompts}
--
--   distill.sft_datum(sample) / distill.sft_datums(samples): cross_entropy datums
--   (weight 1 on completion tokens only).
--   distill.text_sample(prompt, completion, eos = 257): a sample of a byte-level model.
--   distill.dedupe_filter{ngram = 8, overlap = 0.5}: a filter object with :accept(text).
--   distill.reverse_kl_datums(groups, teacher) -> datums, {reverse_kl =, tokens =}: on-policy
--   distillation. groups are the student's samples (sampled with logprobs = true at
--   temperature 1); the teacher (a trainer client) scores their tokens with a forward pass,
--   and each completion token gets the advantage teacher_lp - student_lp, so that
--   importance_sampling on the datums minimises the per-token reverse KL (Tinker's
--   cookbook). reverse_kl: its mean over the sampled tokens before the step.
local M = {}

local function ngrams(text, n)
  local words = {}
  for w in text:gmatch("%S+") do words[#words + 1] = w end
  local out = {}
  for i = 1, #words - n + 1 do out[#out + 1] = table.concat(words, " ", i, i + n - 1) end
  return out
end
M.ngrams = ngrams

-- Exact duplicates (after trimming) and near duplicates: a text whose word
-- n-grams are at least `overlap` shared with n-grams already accepted.
local Dedupe = {}
Dedupe.__index = Dedupe

function M.dedupe_filter(o)
  o = o or {}
  return setmetatable({n = o.ngram or 8, overlap = o.overlap or 0.5, exact = {},
    grams = {}}, Dedupe)
end

function Dedupe:is_duplicate(text)
  local key = text:gsub("^%s+", ""):gsub("%s+$", "")
  if self.exact[key] then return true, "exact" end
  local gs = ngrams(key, self.n)
  if #gs > 0 then
    local seen = 0
    for _, g in ipairs(gs) do if self.grams[g] then seen = seen + 1 end end
    if seen / #gs >= self.overlap then return true, "ngram" end
  end
  return false
end

function Dedupe:add(text)
  local key = text:gsub("^%s+", ""):gsub("%s+$", "")
  self.exact[key] = true
  for _, g in ipairs(ngrams(key, self.n)) do self.grams[g] = true end
end

function Dedupe:accept(text)
  if self:is_duplicate(text) then return false end
  self:add(text)
  return true
end

-- Shards: samples-00000.jsonl ... plus progress.jsonl (one line per finished prompt).
local Shards = {}
Shards.__index = Shards

local function open_shards(dir, shard_size)
  local fs, json = require("flare.fs"), require("flare.json")
  fs.mkdir_p(dir)
  local self = setmetatable({dir = dir, size = shard_size, index = 0, in_shard = 0, fs = fs,
    json = json}, Shards)
  local names = fs.list_dir(dir)
  for _, name in ipairs(names) do
    local i = name:match("^samples%-(%d+)%.jsonl$")
    if i then self.index = math.max(self.index, tonumber(i)) end
  end
  return self
end

local function read_jsonl(path)
  local fs, json = require("flare.fs"), require("flare.json")
  local text = fs.read_file(path)
  local out = {}
  if not text then return out end
  for line in text:gmatch("[^\n]+") do
    local ok, v = pcall(json.decode, line)
    if ok then out[#out + 1] = v end  -- a torn last line from a crash is skipped
  end
  return out
end

function Shards:load()
  local samples, done = {}, {}
  for _, name in ipairs(self.fs.list_dir(self.dir)) do
    if name:match("^samples%-%d+%.jsonl$") then
      for _, s in ipairs(read_jsonl(self.dir .. "/" .. name)) do samples[#samples + 1] = s end
    end
  end
  for _, p in ipairs(read_jsonl(self.dir .. "/progress.jsonl")) do done[p.id] = p end
  -- Only samples of finished prompts count, and of those only the ones written by
  -- the run that finished the prompt (the last `accepted` of its id): an
  -- unfinished prompt is redone whole.
  local left, newest_first, kept = {}, {}, {}
  for id, d in pairs(done) do left[id] = d.accepted or 0 end
  for i = #samples, 1, -1 do
    local s = samples[i]
    if (left[s.id] or 0) > 0 then
      left[s.id] = left[s.id] - 1
      newest_first[#newest_first + 1] = s
    end
  end
  for i = #newest_first, 1, -1 do kept[#kept + 1] = newest_first[i] end
  local path = self:path()
  if self.fs.exists(path) then self.in_shard = #read_jsonl(path) end
  return kept, done
end

function Shards:path() return string.format("%s/samples-%05d.jsonl", self.dir, self.index) end

function Shards:write(sample)
  if self.in_shard >= self.size then
    self.index, self.in_shard = self.index + 1, 0
  end
  self.fs.append_line(self:path(), self.json.encode(sample))
  self.in_shard = self.in_shard + 1
end

function Shards:finish_prompt(record)
  self.fs.append_line(self.dir .. "/progress.jsonl", self.json.encode(record), {fsync = true})
end

local function bucket(rate)
  local b = math.min(9, math.floor(rate * 10))
  return string.format("%.1f-%.1f", b / 10, (b + 1) / 10)
end

local function check_options(o)
  if type(o) ~= "table" then error("distill.rejection_sample: expected an options table", 3) end
  if type(o.sampler) ~= "table" or type(o.sampler.sample) ~= "function" then
    error("distill.rejection_sample: sampler (with a sample method) is required", 3)
  end
  if type(o.problems) ~= "table" then
    error("distill.rejection_sample: problems (a list) is required", 3) end
  if type(o.verify) ~= "function" then
    error("distill.rejection_sample: verify (a function) is required", 3) end
  for i, p in ipairs(o.problems) do
    if type(p.prompt) ~= "string" then
      error("distill.rejection_sample: problems[" .. i .. "].prompt must be a string", 3)
    end
  end
end

function M.rejection_sample(o)
  check_options(o)
  local k = o.k or 8
  local batch = math.min(o.batch or k, k)
  local want = o.want or k
  local stats = {prompts = #o.problems, samples = 0, accepted = 0, truncated = 0, rejected = 0,
    duplicates = 0, completion_tokens = 0, accepted_tokens = 0, pass_rate_histogram = {},
    solved_prompts = 0, resumed_prompts = 0}
  local shards = o.out_dir and open_shards(o.out_dir, o.shard_size or 1000)
  local accepted, done = {}, {}
  if shards then accepted, done = shards:load() end

  local dedupe = M.dedupe_filter{ngram = o.dedupe_ngram, overlap = o.dedupe_overlap}
  for _, s in ipairs(accepted) do dedupe:add(s.completion) end

  -- Per-prompt bookkeeping; prompts finished in an earlier run are skipped.
  local live = {}
  for i, p in ipairs(o.problems) do
    local id = p.id or tostring(i)
    local d = done[id]
    if d then
      stats.resumed_prompts = stats.resumed_prompts + 1
      stats.samples = stats.samples + (d.samples or 0)
      local h = bucket(d.pass_rate or 0)
      stats.pass_rate_histogram[h] = (stats.pass_rate_histogram[h] or 0) + 1
      if (d.correct or 0) > 0 then stats.solved_prompts = stats.solved_prompts + 1 end
    else
      live[#live + 1] = {problem = p, id = id, samples = 0, correct = 0, accepted = 0,
        dedupe = o.dedupe_scope == "prompt" and
          M.dedupe_filter{ngram = o.dedupe_ngram, overlap = o.dedupe_overlap} or dedupe}
    end
  end
  stats.accepted = #accepted
  for _, s in ipairs(accepted) do stats.accepted_tokens =
    stats.accepted_tokens + #(s.tokens or {}) end

  local round = 0
  while #live > 0 do
    local prompts = {}
    for i, st in ipairs(live) do prompts[i] = st.problem.prompt end
    local n = batch
    local groups = o.sampler:sample{prompts = prompts, n = n, max_tokens = o.max_tokens or 64,
      temperature = o.temperature or 1.0, logprobs = false,
      seed = o.seed and (o.seed + round * batch) or nil}
    round = round + 1
    local still = {}
    for i, st in ipairs(live) do
      local cs = groups[i] and (groups[i].completions or groups[i]) or {}
      for _, c in ipairs(cs) do
        st.samples = st.samples + 1
        stats.samples = stats.samples + 1
        stats.completion_tokens = stats.completion_tokens + #(c.tokens or {})
        local text = c.text or ""
        local ok = o.verify(st.problem, text)
        if ok then st.correct = st.correct + 1 end
        if c.finish_reason == "length" then
          stats.truncated = stats.truncated + 1
        elseif not ok then
          stats.rejected = stats.rejected + 1
        elseif st.accepted >= want then  -- luacheck: ignore 542
          -- enough already: counted for the pass rate only
        elseif st.dedupe:is_duplicate(text) then
          stats.duplicates = stats.duplicates + 1
        else
          st.dedupe:add(text)
          st.accepted = st.accepted + 1
          local sample = {id = st.id, prompt = st.problem.prompt, completion = text,
            prompt_tokens = c.prompt_tokens, tokens = c.tokens}
          accepted[#accepted + 1] = sample
          stats.accepted = stats.accepted + 1
          stats.accepted_tokens = stats.accepted_tokens + #(c.tokens or {})
          if shards then shards:write(sample) end
        end
      end
      if st.accepted >= want or st.samples >= k then
        local rate = st.samples > 0 and st.correct / st.samples or 0
        local h = bucket(rate)
        stats.pass_rate_histogram[h] = (stats.pass_rate_histogram[h] or 0) + 1
        if st.correct > 0 then stats.solved_prompts = stats.solved_prompts + 1 end
        if shards then
          shards:finish_prompt{id = st.id, samples = st.samples, correct = st.correct,
            accepted = st.accepted, pass_rate = rate}
        end
      else
        still[#still + 1] = st
      end
    end
    live = still
  end
  stats.acceptance_rate = stats.samples > 0 and stats.accepted / stats.samples or 0
  return {samples = accepted, stats = stats}
end

-- A sample from text for a byte-level model (the emulator's tiny models): prompt
-- bytes, then completion bytes and the end-of-sequence token (default 257).
function M.text_sample(prompt, completion, eos)
  local p, t = {}, {}
  for i = 1, #prompt do p[i] = prompt:byte(i) end
  for i = 1, #completion do t[i] = completion:byte(i) end
  t[#t + 1] = eos or 257
  return {prompt = prompt, completion = completion, prompt_tokens = p, tokens = t}
end

-- A cross-entropy datum: the loss covers the completion tokens only.
function M.sft_datum(sample)
  if type(sample.prompt_tokens) ~= "table" or type(sample.tokens) ~= "table" then
    error("distill.sft_datum: sample.prompt_tokens and sample.tokens (token id lists) are required",
      2)
  end
  local full = {}
  for _, t in ipairs(sample.prompt_tokens) do full[#full + 1] = t end
  local p = #full
  for _, t in ipairs(sample.tokens) do full[#full + 1] = t end
  local input, target, weights = {}, {}, {}
  for j = 1, #full - 1 do
    input[j], target[j] = full[j], full[j + 1]
    weights[j] = (j + 1 > p) and 1 or 0
  end
  return {model_input = {chunks = {{type = "encoded_text", tokens = input}}},
    loss_fn_inputs = {target_tokens = target, weights = weights}}
end

function M.sft_datums(samples)
  local out = {}
  for i, s in ipairs(samples) do out[i] = M.sft_datum(s) end
  return out
end

function M.reverse_kl_datums(groups, teacher)
  local grpo = require("flare.grpo")
  local datums, scoring = {}, {}
  for _, group in ipairs(groups) do
    for _, sample in ipairs(grpo.completions_of(group)) do
      local d = grpo.datum(sample, 0)  -- sampler logprobs; the advantages are set below
      datums[#datums + 1] = d
      scoring[#scoring + 1] = {model_input = d.model_input, loss_fn_inputs = {
        target_tokens = d.loss_fn_inputs.target_tokens, weights = d.loss_fn_inputs.weights}}
    end
  end
  if #datums == 0 then return datums, {reverse_kl = 0, tokens = 0} end
  local scored = teacher:forward(scoring, "cross_entropy").loss_fn_outputs
  local kl, tokens = 0, 0
  for i, d in ipairs(datums) do
    local inp, teacher_lp = d.loss_fn_inputs, scored[i].logprobs
    for j, w in ipairs(inp.weights) do
      if w > 0 then
        inp.advantages[j] = teacher_lp[j] - inp.logprobs[j]
        kl, tokens = kl - inp.advantages[j], tokens + 1
      end
    end
  end
  return datums, {reverse_kl = kl / math.max(1, tokens), tokens = tokens}
end

-- Stats as printable lines, histogram bars included.
function M.format_stats(stats)
  local lines =
    {string.format("prompts %d  samples %d  accepted %d (%.1f%%)  truncated %d  rejected %d  " ..
      "duplicates %d",
    stats.prompts, stats.samples, stats.accepted, 100 * (stats.acceptance_rate or 0),
      stats.truncated,
    stats.rejected, stats.duplicates)}
  lines[#lines + 1] = string.format("tokens: sampled %d, accepted %d; prompts solved %d/%d",
    stats.completion_tokens, stats.accepted_tokens, stats.solved_prompts, stats.prompts)
  lines[#lines + 1] = "pass rate per prompt:"
  for b = 0, 9 do
    local key = string.format("%.1f-%.1f", b / 10, (b + 1) / 10)
    local n = stats.pass_rate_histogram[key] or 0
    lines[#lines + 1] = string.format("  %s %4d %s", key, n, string.rep("#", n))
  end
  return lines
end

-- Arguments are checked before each call (a misuse raises invalid_argument naming the field).
return require("flare.args").checked(M, "flare.distill", {
  ngrams = {"text:string", "n:integer"},
  dedupe_filter = {{"opts", {ngram = "integer", overlap = "number"}}},
  rejection_sample = {{"opts", {sampler = "table", problems = "table", verify = "function",
    k = "integer", batch = "integer", want = "integer", max_tokens = "integer",
    temperature = "number", out_dir = "string", seed = "integer",
    shard_size = "integer", dedupe_ngram = "integer", dedupe_overlap = "number",
    dedupe_scope = "string"}}},
  text_sample = {"prompt:string", "completion:string", "eos:nil|integer"},
  sft_datum = {"sample:table"},
  sft_datums = {"samples:table"},
  format_stats = {"stats:table"},
  reverse_kl_datums = {"groups:table", "teacher:table"},
})
