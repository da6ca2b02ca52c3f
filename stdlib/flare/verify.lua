-- flare.verify: answer checkers for rewards and rejection sampling.
--
--   verify.last_number(text)             -> number or nil (the last number in the text)
--   verify.boxed(text)                   -> string or nil (content of the last \boxed{...})
--   verify.extract_answer(text)          -> string or nil (boxed first, else the last number)
--   verify.numbers_equal(a, b, tol)      -> bool (numbers or numeric strings)
--   verify.math_answer(text, expected)   -> bool (extracted answer equals expected numerically)
--   verify.exact(text, expected, opts)   -> bool ({strip = true, ignore_case = false})
--   verify.pattern(text, lua_pattern)    -> bool (Lua pattern; also verify.regex)
--   verify.lcs_ratio(a, b)               -> 0..1 (2 * LCS / (#a + #b), by bytes)
--   verify.countdown(expr, numbers, target) -> ok, value_or_reason
--   verify.command{argv =, stdin =, timeout_s =, env =} -> ok, result (exit status 0 passes)
local M = {}

local number_pattern = "[-+]?%d[%d,]*%.?%d*"

local function to_number(s)
  if type(s) == "number" then return s end
  if type(s) ~= "string" then return nil end
  s = s:gsub("^%s+", ""):gsub("%s+$", "")
  s = s:gsub("^%$", ""):gsub("%%$", "")
  local n = tonumber((s:gsub(",", "")))
  if n then return n end
  local p, q = s:match("^([-+]?%d+)%s*/%s*(%d+)$")
  if p and tonumber(q) ~= 0 then return tonumber(p) / tonumber(q) end
  local fp, fq = s:match("^\\d?frac{([-+]?%d+)}{(%d+)}$")
  if fp and tonumber(fq) ~= 0 then return tonumber(fp) / tonumber(fq) end
  return nil
end
M.to_number = to_number

function M.last_number(text)
  if type(text) ~= "string" then return nil end
  local last
  for s in text:gmatch(number_pattern) do
    s = s:gsub("[,%.]+$", "")  -- "8." at the end of a sentence, "1," in a list
    local n = to_number(s)
    if n then last = n end
  end
  return last
end

-- Content of the last \boxed{...}, with nested braces.
function M.boxed(text)
  if type(text) ~= "string" then return nil end
  local result
  local start = 1
  while true do
    local s, e = text:find("\\boxed%s*{", start)
    if not s then break end
    local depth, i = 1, e + 1
    while i <= #text and depth > 0 do
      local c = text:sub(i, i)
      if c == "{" then depth = depth + 1 elseif c == "}" then depth = depth - 1 end
      i = i + 1
    end
    if depth == 0 then result = text:sub(e + 1, i - 2) end
    start = e + 1
  end
  return result
end

function M.extract_answer(text)
  local b = M.boxed(text)
  if b then return b end
  local n = M.last_number(text)
  if n then return tostring(n) end
  return nil
end

function M.numbers_equal(a, b, tol)
  local x, y = to_number(a), to_number(b)
  if not x or not y then return false end
  tol = tol or 1e-6
  return math.abs(x - y) <= tol * math.max(1, math.abs(y))
end

-- True when the boxed answer (or else the last number) equals `expected`.
function M.math_answer(text, expected, opts)
  local tol = opts and opts.tol
  local b = M.boxed(text)
  if b then
    if M.numbers_equal(b, expected, tol) then return true end
    local n = M.last_number(b)
    return n ~= nil and M.numbers_equal(n, expected, tol)
  end
  local n = M.last_number(text)
  return n ~= nil and M.numbers_equal(n, expected, tol)
end

function M.exact(text, expected, opts)
  if type(text) ~= "string" then return false end
  opts = opts or {}
  local a, b = text, tostring(expected)
  if opts.strip ~= false then
    a = a:gsub("^%s+", ""):gsub("%s+$", "")
    b = b:gsub("^%s+", ""):gsub("%s+$", "")
  end
  if opts.ignore_case then a, b = a:lower(), b:lower() end
  return a == b
end

function M.pattern(text, pattern)
  return type(text) == "string" and text:find(pattern) ~= nil
end
M.regex = M.pattern

-- Longest common subsequence ratio, O(#a * #b) time and O(#b) memory.
function M.lcs_ratio(a, b)
  a, b = tostring(a or ""), tostring(b or "")
  local n, m = #a, #b
  if n + m == 0 then return 1 end
  if n == 0 or m == 0 then return 0 end
  local prev, cur = {}, {}
  for j = 0, m do prev[j] = 0 end
  local bb = {b:byte(1, m)}
  for i = 1, n do
    local ai = a:byte(i)
    cur[0] = 0
    for j = 1, m do
      if ai == bb[j] then
        cur[j] = prev[j - 1] + 1
      else
        local x, y = prev[j], cur[j - 1]
        cur[j] = x > y and x or y
      end
    end
    prev, cur = cur, prev
  end
  return 2 * prev[m] / (n + m)
end

-- Countdown: an arithmetic expression over + - * / and parentheses that uses
-- each given number at most once must equal the target. Evaluated by a small
-- parser with exact fractions; nothing is ever passed to load().
local function gcd(a, b)
  a, b = math.abs(a), math.abs(b)
  while b ~= 0 do a, b = b, a % b end
  return a
end

local function frac(p, q)
  if q == 0 then error("division by zero", 0) end
  if q < 0 then p, q = -p, -q end
  local g = gcd(p, q)
  if g > 1 then p, q = p / g, q / g end
  return {p, q}
end

local function parse_countdown(expr, available)
  local pos = 1
  local function skip() pos = expr:find("[^%s]", pos) or #expr + 1 end
  local function peek() skip(); return expr:sub(pos, pos) end
  local parse_sum
  local function parse_atom()
    local c = peek()
    if c == "(" then
      pos = pos + 1
      local v = parse_sum()
      if peek() ~= ")" then error("expected ')' at offset " .. pos, 0) end
      pos = pos + 1
      return v
    end
    if c == "-" then
      pos = pos + 1
      local v = parse_atom()
      return {-v[1], v[2]}
    end
    local digits = expr:match("^%d+", pos)
    if not digits then
      error(c == "" and "unexpected end of expression" or
        ("unexpected character '" .. c .. "' at offset " .. pos), 0)
    end
    pos = pos + #digits
    local n = tonumber(digits)
    if (available[n] or 0) == 0 then error("number " .. n .. " is not available", 0) end
    available[n] = available[n] - 1
    return {n, 1}
  end
  local function parse_product()
    local v = parse_atom()
    while true do
      local c = peek()
      if c ~= "*" and c ~= "/" then return v end
      pos = pos + 1
      local r = parse_atom()
      if c == "*" then v = frac(v[1] * r[1], v[2] * r[2]) else v = frac(v[1] * r[2],
        v[2] * r[1]) end
    end
  end
  parse_sum = function()
    local v = parse_product()
    while true do
      local c = peek()
      if c ~= "+" and c ~= "-" then return v end
      pos = pos + 1
      local r = parse_product()
      local sign = c == "+" and 1 or -1
      v = frac(v[1] * r[2] + sign * r[1] * v[2], v[2] * r[2])
    end
  end
  local v = parse_sum()
  if peek() ~= "" then error("unexpected character '" .. peek() .. "' at offset " .. pos, 0) end
  return v
end

function M.countdown(expr, numbers, target)
  if type(expr) ~= "string" or #expr > 200 then return false, "expression missing or too long" end
  local available = {}
  for _, n in ipairs(numbers) do available[n] = (available[n] or 0) + 1 end
  local ok, v = pcall(parse_countdown, expr, available)
  if not ok then return false, v end
  if v[2] ~= 1 then return false, "value " .. v[1] .. "/" .. v[2] .. " is not an integer" end
  if v[1] ~= target then return false, "value " .. v[1] .. " is not the target " .. target end
  return true, v[1]
end

-- Runs a checker program in a child process (its own process group, killed
-- with the whole group at the timeout). Passes when it exits with status 0.
function M.command(opts)
  if type(opts) ~= "table" or type(opts.argv) ~= "table" then
    require("flare.args").invalid("flare.verify.command",
      "option 'argv' is required (a list of strings)")
  end
  local proc = require("flare.proc")
  local r = proc.run{argv = opts.argv, stdin = opts.stdin, timeout_s = opts.timeout_s or 10,
    env = opts.env, cwd = opts.cwd}
  return r.status == 0 and not r.timed_out, r
end

-- Arguments are checked before each call (a misuse raises invalid_argument naming the field).
-- Texts may be nil (a missing completion scores as no answer).
return require("flare.args").checked(M, "flare.verify", {
  to_number = {"s:nil|string|number"},
  last_number = {"text:nil|string"},
  boxed = {"text:nil|string"},
  extract_answer = {"text:nil|string"},
  numbers_equal = {"a:nil|string|number", "b:nil|string|number", "tol:nil|number"},
  math_answer = {"text:nil|string", "expected:string|number", {"opts", {tol = "number"}}},
  exact = {"text:nil|string", "expected:string|number",
    {"opts", {strip = "boolean", ignore_case = "boolean"}}},
  pattern = {"text:nil|string", "pattern:string"},
  regex = {"text:nil|string", "pattern:string"},
  lcs_ratio = {"a:string", "b:string"},
  countdown = {"expr:nil|string", "numbers:table", "target:number"},
  command = {{"opts", {argv = "table", stdin = "string", timeout_s = "number", env = "table",
    cwd = "string"}}},
})
