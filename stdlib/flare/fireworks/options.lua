-- flare.fireworks.options: option checking shared by the client modules.
--   check(opts, spec, who) validates a table of options against spec
--   {name = "string" | "number" | "integer" | "boolean" | "table" | "string|table" | ...};
--   an unknown name raises with a did-you-mean, a wrong type names the option.
--   raise(code, message, fields) raises a structured error.
local M = {}

function M.raise(code, message, fields)
  local e = {code = code, message = message}
  for k, v in pairs(fields or {}) do e[k] = v end
  flare.error(e)
end

local function distance(a, b)
  local la, lb = #a, #b
  local prev = {}
  for j = 0, lb do prev[j] = j end
  for i = 1, la do
    local cur = {[0] = i}
    for j = 1, lb do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[lb]
end

function M.did_you_mean(name, candidates)
  -- A shortened name ("timeout" for "timeout_seconds", "max_replicas") first.
  local stem = name:gsub("s$", "")
  for _, c in ipairs(candidates) do
    if #stem >= 4 and c:sub(1, #stem) == stem then return c end
  end
  local best, best_d
  for _, c in ipairs(candidates) do
    local d = distance(name, c)
    if not best_d or d < best_d then best, best_d = c, d end
  end
  if best and best_d <= math.max(2, math.floor(#name / 3)) then return best end
  return nil
end

local function type_ok(v, want)
  for t in want:gmatch("[^|]+") do
    if t == "integer" then
      if type(v) == "number" and v == math.floor(v) then return true end
    elseif type(v) == t then
      return true
    end
  end
  return false
end

function M.check(opts, spec, who)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    M.raise("invalid_argument", who .. ": options must be a table, got " .. type(opts))
  end
  local names = {}
  for k in pairs(spec) do names[#names + 1] = k end
  table.sort(names)
  for k, v in pairs(opts) do
    local want = spec[k]
    if type(k) ~= "string" or not want then
      local hint = type(k) == "string" and M.did_you_mean(k, names)
      M.raise("invalid_argument", who .. ": unknown option '" .. tostring(k) .. "'" ..
        (hint and (" (did you mean '" .. hint .. "'?)") or (" (known: " ..
          table.concat(names, ", ") .. ")")))
    end
    if not type_ok(v, want) then
      local what = want:gsub("|", " or ")
      M.raise("invalid_argument", who .. ": option '" .. k ..
        "' must be " .. (what == "integer" and "an integer" or
        ("a " .. what)) .. ", got " .. type(v) .. (type(v) ~= "table" and (" " ..
          tostring(v)) or ""))
    end
  end
  return opts
end

-- n random hex digits from /dev/urandom (math.random is not seeded per process).
function M.random_hex(n)
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(math.ceil(n / 2))
  if f then f:close() end
  if not bytes then
    math.randomseed(os.time() + math.floor(flare.clock() * 1e6))
    local t = {}
    for i = 1, n do t[i] = string.format("%x", math.random(0, 15)) end
    return table.concat(t)
  end
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end)):sub(1, n)
end

return M
