-- flare.release.drift: input drift and reward collapse.
--
--   drift.drift(train_texts, live_texts, {tokenizer = "bytes" | "words" | fn, max_distance = 0.3})
--     -> {distance =, divergence =, train_tokens =, live_tokens =, max_distance =, alert =,
--         top = {{token =, train =, live =}, ...}}
--     Input drift is the Jensen-Shannon distance between the token distributions of the live
--     prompts (P) and of the training data (Q): sqrt(JSD), JSD = (KL(P||M) + KL(Q||M)) / 2,
--     M = (P + Q) / 2, logarithms base 2, so 0 = the same distribution, 1 = disjoint.
--   drift.collapse(candidate_texts, parent_texts, {tokenizer =, max_length_growth = 0.5,
--       max_distinct_drop = 0.25})
--     -> {candidate = {distinct_1 =, distinct_2 =, mean_length =, n =}, parent = {...},
--         length_growth =, distinct_drop = {[1] =, [2] =}, alert =, reasons =}
--     Reward collapse shows as outputs that grow longer and less diverse than the parent's:
--     distinct-n is the number of distinct n-grams over the number of n-grams across all outputs;
--     length_growth = candidate mean length / parent mean length - 1; distinct_drop[n] =
--     (parent distinct-n - candidate distinct-n) / parent distinct-n.
--   drift.live_prompts(family, {registry =, window_s = 3600, limit = 10000}): the prompts
--     `flare gateway` logged, the live side of drift
--   drift.drift_files(train, live, opts) / drift.collapse_files(candidate, parent, opts): texts
--     from JSONL (a string, or an object's prompt, text or completion field per line), suite
--     results ({items = {{text =}}}) or plain text (one per line)
-- Tokens default to bytes: the emulator's models are byte-level.
local json = require("flare.json")
local fs = require("flare.fs")
local args = require("flare.args")
local errors = require("flare.release.errors")

local M = {}

local function tokenizer_of(t, who)
  if t == nil or t == "bytes" then
    return function(s)
      local out = {}
      for i = 1, #s do out[i] = s:sub(i, i) end
      return out
    end
  elseif t == "words" then
    return function(s)
      local out = {}
      for w in s:gmatch("%S+") do out[#out + 1] = w end
      return out
    end
  elseif type(t) == "function" then
    return t
  end
  errors.invalid(who, "option 'tokenizer' must be \"bytes\", \"words\" or a function")
end

local function check_texts(texts, who, name)
  if type(texts) ~= "table" then
    errors.invalid(who, "argument '" .. name .. "' must be a list of strings")
  end
  for i, t in ipairs(texts) do
    if type(t) ~= "string" then
      errors.invalid(who, "argument '" .. name .. "[" .. i .. "]' must be a string, got " ..
        type(t))
    end
  end
  if #texts == 0 then errors.invalid(who, "argument '" .. name .. "' is empty") end
end

local function distribution(texts, tokenize)
  local counts, total = {}, 0
  for _, t in ipairs(texts) do
    for _, tok in ipairs(tokenize(t)) do
      counts[tok] = (counts[tok] or 0) + 1
      total = total + 1
    end
  end
  return counts, total
end

local function log2(x) return math.log(x) / math.log(2) end

function M.jensen_shannon(p_counts, p_total, q_counts, q_total)
  if p_total == 0 or q_total == 0 then return nil end
  local keys = {}
  for k in pairs(p_counts) do keys[k] = true end
  for k in pairs(q_counts) do keys[k] = true end
  local js = 0
  for k in pairs(keys) do
    local p, q = (p_counts[k] or 0) / p_total, (q_counts[k] or 0) / q_total
    local m = (p + q) / 2
    if p > 0 then js = js + 0.5 * p * log2(p / m) end
    if q > 0 then js = js + 0.5 * q * log2(q / m) end
  end
  js = math.max(0, math.min(1, js))
  return js, math.sqrt(js)
end

function M.drift(train, live, opts)
  local who = "flare.release.drift"
  check_texts(train, who, "train_texts")
  check_texts(live, who, "live_texts")
  opts = args.options(opts, {tokenizer = "nil|string|function", max_distance = "nil|number"}, who)
  local tokenize = tokenizer_of(opts.tokenizer, who)
  local qc, qt = distribution(train, tokenize)
  local pc, pt = distribution(live, tokenize)
  if qt == 0 or pt == 0 then errors.invalid(who, "the texts hold no tokens") end
  local js, dist = M.jensen_shannon(pc, pt, qc, qt)
  local max_distance = opts.max_distance or 0.3
  local top = {}
  local keys = {}
  for k in pairs(qc) do keys[k] = true end
  for k in pairs(pc) do keys[k] = true end
  for k in pairs(keys) do
    top[#top + 1] = {token = k, train = (qc[k] or 0) / qt, live = (pc[k] or 0) / pt}
  end
  table.sort(top, function(a, b)
    local da, db = math.abs(a.live - a.train), math.abs(b.live - b.train)
    if da ~= db then return da > db end
    return tostring(a.token) < tostring(b.token)
  end)
  for i = #top, 6, -1 do top[i] = nil end
  return {measure = "jensen-shannon distance (base 2)", distance = dist, divergence = js,
    train_tokens = qt, live_tokens = pt, max_distance = max_distance, alert = dist > max_distance,
    top = top}
end

local function profile(texts, tokenize)
  local grams = {{}, {}}
  local totals, uniques = {0, 0}, {0, 0}
  local length = 0
  for _, t in ipairs(texts) do
    local toks = tokenize(t)
    length = length + #toks
    for n = 1, 2 do
      for i = 1, #toks - n + 1 do
        local g = table.concat(toks, "\0", i, i + n - 1)
        totals[n] = totals[n] + 1
        if not grams[n][g] then
          grams[n][g] = true
          uniques[n] = uniques[n] + 1
        end
      end
    end
  end
  return {distinct_1 = totals[1] > 0 and uniques[1] / totals[1] or 0,
    distinct_2 = totals[2] > 0 and uniques[2] / totals[2] or 0,
    mean_length = #texts > 0 and length / #texts or 0, n = #texts}
end
M.profile = profile

function M.collapse(candidate, parent, opts)
  local who = "flare.release.collapse"
  check_texts(candidate, who, "candidate_texts")
  check_texts(parent, who, "parent_texts")
  opts = args.options(opts, {tokenizer = "nil|string|function", max_length_growth = "nil|number",
    max_distinct_drop = "nil|number"}, who)
  local tokenize = tokenizer_of(opts.tokenizer, who)
  local c, p = profile(candidate, tokenize), profile(parent, tokenize)
  local growth = p.mean_length > 0 and c.mean_length / p.mean_length - 1 or 0
  local drop = {}
  for n = 1, 2 do
    local pv, cv = p["distinct_" .. n], c["distinct_" .. n]
    drop[n] = pv > 0 and (pv - cv) / pv or 0
  end
  local max_growth, max_drop = opts.max_length_growth or 0.5, opts.max_distinct_drop or 0.25
  local reasons = {}
  if growth > max_growth then
    reasons[#reasons + 1] = string.format("length grew %.0f%% (limit %.0f%%)", growth * 100,
      max_growth * 100)
  end
  for n = 1, 2 do
    if drop[n] > max_drop then
      reasons[#reasons + 1] = string.format("distinct-%d fell %.0f%% (limit %.0f%%)", n,
        drop[n] * 100, max_drop * 100)
    end
  end
  return {candidate = c, parent = p, length_growth = growth, distinct_drop = drop,
    max_length_growth = max_growth, max_distinct_drop = max_drop, alert = #reasons > 0,
    reasons = reasons}
end

-- The texts of a file: suite results, JSONL, or plain lines.
function M.read_texts(path, who)
  local text = fs.read_file(path)
  if not text then errors.not_found(who .. ": no file " .. path) end
  local ok, whole = pcall(json.decode, text)
  if ok and type(whole) == "table" and type(whole.items) == "table" then
    local out = {}
    for _, it in ipairs(whole.items) do out[#out + 1] = it.text or it.prompt or "" end
    return out
  end
  local out = {}
  local n = 0
  for line in text:gmatch("[^\n]+") do
    n = n + 1
    local first = line:match("^%s*(.)")
    if first == "{" or first == "\"" then
      local ok2, v = pcall(json.decode, line)
      if not ok2 then errors.invalid(who, path .. " line " .. n .. ": " .. tostring(v)) end
      if type(v) == "table" then v = v.prompt or v.text or v.completion end
      if type(v) ~= "string" then
        errors.invalid(who, path .. " line " .. n .. ": expected a string or an object with " ..
          "prompt, text or completion")
      end
      out[#out + 1] = v
    elseif first then
      out[#out + 1] = line
    end
  end
  return out
end

-- The prompts the gateway logged for a family in the last window_s seconds (newest first, at
-- most limit).
function M.live_prompts(family, o)
  o = o or {}
  local store = require("flare.release.store")
  local db = store.open(o.registry)
  if not db:query("SELECT 1 AS x FROM families WHERE family = ?", {family})[1] then
    require("flare.release.registry").unknown_family(db, family)
  end
  local out = {}
  for _, r in ipairs(db:query("SELECT prompt FROM requests WHERE family = ? AND at >= ? AND " ..
    "prompt IS NOT NULL ORDER BY seq DESC LIMIT ?", {family, flare.time() - (o.window_s or 3600),
      o.limit or 10000})) do
    out[#out + 1] = r.prompt
  end
  if #out == 0 then
    errors.not_found("no prompts of family " .. family .. " logged by flare gateway in the " ..
      "last " .. (o.window_s or 3600) .. " s")
  end
  return out
end

function M.drift_files(train, live, opts)
  return M.drift(M.read_texts(train, "--train"), M.read_texts(live, "--live"), opts)
end

function M.collapse_files(candidate, parent, opts)
  return M.collapse(M.read_texts(candidate, "--candidate"), M.read_texts(parent, "--parent"), opts)
end

function M.drift_summary(r)
  local lines = {
    string.format("input drift: Jensen-Shannon distance %.4f (divergence %.4f, base 2) " ..
    "over %d training and %d live tokens; alert above %.4f: %s", r.distance, r.divergence,
    r.train_tokens, r.live_tokens, r.max_distance, r.alert and "ALERT" or "ok")}
  for _, t in ipairs(r.top) do
    lines[#lines + 1] = string.format("  %-10s train %.4f  live %.4f", string.format("%q", t.token),
      t.train, t.live)
  end
  return table.concat(lines, "\n")
end

function M.collapse_summary(r)
  local c, p = r.candidate, r.parent
  return table.concat({
    string.format("reward collapse check: %s", r.alert and ("ALERT: " .. table.concat(r.reasons,
      "; "))
      or "ok"),
    string.format("  %-10s %10s %10s %12s", "", "distinct-1", "distinct-2", "mean length"),
    string.format("  %-10s %10.4f %10.4f %12.2f", "parent", p.distinct_1, p.distinct_2,
      p.mean_length),
    string.format("  %-10s %10.4f %10.4f %12.2f", "candidate", c.distinct_1, c.distinct_2,
      c.mean_length),
    string.format("  length growth %+.1f%%, distinct-1 drop %.1f%%, distinct-2 drop %.1f%%",
      r.length_growth * 100, r.distinct_drop[1] * 100, r.distinct_drop[2] * 100)}, "\n")
end

return M
