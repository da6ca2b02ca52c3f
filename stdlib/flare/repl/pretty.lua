-- flare.repl.pretty: readable values for the prompt.
--
--   pretty.format(value, opts) -> string
--   pretty.format_values(opts, n, ...) -> string  (one value per line)
--   pretty.summary(value) -> one-line summary of an object, or nil
--
-- opts: color (ANSI colours, default false), max_depth (default 4),
-- max_items (entries shown per table, default 40), max_total (entries shown in
-- all, default 1000), width (default 100).
--
-- Tables print as constructors, on one line when they fit and indented
-- otherwise; a table met again inside itself prints as <cycle>. A value whose
-- metatable has __repr (a function returning a string), __tostring, or a
-- __name prints as one line: that is how DeploymentInfo, futures and error
-- tables show up. A __name summary lists up to four scalar fields: those named
-- in the metatable's __fields, else ids and names first, then state. Plain
-- tables of a known shape (DeploymentInfo) go through M.summarizers.
local M = {}

local colors = {
  string = "\27[32m",
  number = "\27[36m",
  boolean = "\27[35m",
  ["nil"] = "\27[35m",
  dim = "\27[2m",
  object = "\27[33m",
}
local reset = "\27[0m"

local keywords = {}
for w in ([[and break do else elseif end false for function goto if in local nil not or
  repeat return then true until while]]):gmatch("%a+") do
  keywords[w] = true
end

local function paint(opts, kind, text)
  if not opts.color then return text end
  return colors[kind] .. text .. reset
end

-- Columns the text takes on a terminal (colour sequences take none).
local function visible_len(s)
  local plain = s:gsub("\27%[[%d;]*m", "")
  local _, continuation = plain:gsub("[\128-\191]", "")
  return #plain - continuation
end

local escapes = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ["\\"] = "\\\\", ['"'] = '\\"' }

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or string.format("\\%03d", c:byte())
  end) .. '"'
end
M.quote = quote

local function is_identifier(k)
  return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil and not keywords[k]
end
M.is_identifier = is_identifier

local function function_text(f)
  local info = debug.getinfo(f, "S")
  if info and info.what ~= "C" and info.short_src then
    return "function " .. info.short_src .. ":" .. tostring(info.linedefined)
  end
  return "builtin function"
end

local function scalar(v, opts)
  local t = type(v)
  if t == "string" then return paint(opts, "string", quote(v)) end
  if t == "number" then
    local text
    if v ~= v then
      text = "0/0"
    elseif v == math.huge then
      text = "math.huge"
    elseif v == -math.huge then
      text = "-math.huge"
    elseif v == math.floor(v) and math.abs(v) < 1e15 then
      text = string.format("%d", v)
    else
      text = string.format("%.14g", v)
    end
    return paint(opts, "number", text)
  end
  if t == "boolean" or t == "nil" then return paint(opts, t, tostring(v)) end
  if t == "function" then return paint(opts, "dim", "<" .. function_text(v) .. ">") end
  return paint(opts, "dim", "<" .. tostring(v) .. ">")
end

local function one_line(s)
  s = s:gsub("\r?\n%s*", " ")
  return s
end

-- Fields of a __name object worth a summary: the metatable's __fields list
-- when it has one, else ids and names first, then state, then the rest.
local function summary_keys(v, mt)
  local listed = rawget(mt, "__fields")
  if type(listed) == "table" then return listed end
  local function rank(k)
    if type(k) ~= "string" then return 9 end
    if k == "id" or k:match("_id$") or k == "name" then return 1 end
    if k == "state" or k == "status" then return 2 end
    return 3
  end
  local keys = M.sorted_keys(v)
  table.sort(keys, function(a, b)
    local ra, rb = rank(a), rank(b)
    if ra ~= rb then return ra < rb end
    return tostring(a) < tostring(b)
  end)
  return keys
end

-- Plain tables recognised by their shape: functions(v) -> one-line string or
-- nil, tried in order. Modules may add their own.
M.summarizers = {
  -- DeploymentInfo from fw.deployments:get/list/create_or_get.
  function(v)
    local id, state = rawget(v, "deployment_id"), rawget(v, "state")
    if type(id) ~= "string" or type(state) ~= "string" or rawget(v, "inference_model") == nil then
      return nil
    end
    local parts = { "DeploymentInfo " .. id .. " " .. state }
    local base = rawget(v, "base_model")
    if type(base) == "string" then parts[#parts + 1] = "base=" .. base end
    local lo, hi = rawget(v, "min_replica_count"), rawget(v, "max_replica_count")
    if type(lo) == "number" and type(hi) == "number" then
      parts[#parts + 1] = string.format("replicas=%d..%d", lo, hi)
    end
    return "<" .. table.concat(parts, " ") .. ">"
  end,
}

-- The summary of an object-like value, or nil for plain tables and scalars.
function M.summary(v)
  local t = type(v)
  if t ~= "table" and t ~= "userdata" then return nil end
  local mt = getmetatable(v)
  if t == "table" and mt == nil then
    for _, summarize in ipairs(M.summarizers) do
      local ok, s = pcall(summarize, v)
      if ok and type(s) == "string" then return s end
    end
    return nil
  end
  if type(mt) ~= "table" then return nil end
  local repr = rawget(mt, "__repr")
  if type(repr) == "function" then
    local ok, s = pcall(repr, v)
    if ok and type(s) == "string" then return one_line(s) end
  end
  if rawget(mt, "__tostring") ~= nil then
    local ok, s = pcall(tostring, v)
    if ok and type(s) == "string" then return one_line(s) end
  end
  local name = rawget(mt, "__name")
  if type(name) == "string" then
    if t ~= "table" then return "<" .. name .. ">" end
    local parts, n = {}, 0
    for _, k in ipairs(summary_keys(v, mt)) do
      local val = rawget(v, k)
      local vt = type(val)
      if is_identifier(k) and (vt == "string" or vt == "number" or vt == "boolean") then
        n = n + 1
        if n > 4 then
          parts[#parts + 1] = "..."
          break
        end
        parts[#parts + 1] = k .. "=" .. scalar(val, {})
      end
    end
    return "<" .. name .. (#parts > 0 and " " .. table.concat(parts, " ") or "") .. ">"
  end
  return nil
end

local type_order = { number = 1, string = 2, boolean = 3 }

-- Keys of t that are not in its array part 1..#t, in a stable order.
function M.sorted_keys(t)
  local n = #t
  local keys = {}
  for k in pairs(t) do
    if not (type(k) == "number" and k >= 1 and k <= n and k == math.floor(k)) then
      keys[#keys + 1] = k
    end
  end
  table.sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return (type_order[ta] or 9) < (type_order[tb] or 9) end
    if ta == "number" or ta == "string" then return a < b end
    return tostring(a) < tostring(b)
  end)
  return keys
end

local format_value

local function format_key(k, opts)
  if is_identifier(k) then return k end
  return "[" .. scalar(k, opts) .. "]"
end

local function format_table(t, opts, depth, ancestors, indent)
  if ancestors[t] then return paint(opts, "dim", "<cycle>") end
  local n = #t
  local keys = M.sorted_keys(t)
  local total = n + #keys
  if total == 0 then return "{}" end
  if depth >= opts.max_depth then
    return paint(opts, "dim", "{... " .. total .. (total == 1 and " item" or " items") .. "}")
  end
  ancestors[t] = true
  local inner = indent .. "  "
  local items, multiline = {}, false
  local shown = 0
  for i = 1, n do
    if shown >= opts.max_items or opts.remaining <= 0 then break end
    shown = shown + 1
    opts.remaining = opts.remaining - 1
    items[#items + 1] = format_value(rawget(t, i), opts, depth + 1, ancestors, inner)
  end
  for _, k in ipairs(keys) do
    if shown >= opts.max_items or opts.remaining <= 0 then break end
    shown = shown + 1
    opts.remaining = opts.remaining - 1
    items[#items + 1] = format_key(k, opts) .. " = " ..
      format_value(rawget(t, k), opts, depth + 1, ancestors, inner)
  end
  ancestors[t] = nil
  if total > shown then
    items[#items + 1] = paint(opts, "dim", "... (" .. (total - shown) .. " more)")
  end
  local width = #indent
  for _, s in ipairs(items) do
    if s:find("\n", 1, true) then multiline = true end
    width = width + visible_len(s) + 2
  end
  if not multiline and width + 2 <= opts.width then
    return "{" .. table.concat(items, ", ") .. "}"
  end
  return "{\n" .. inner .. table.concat(items, ",\n" .. inner) .. "\n" .. indent .. "}"
end

function format_value(v, opts, depth, ancestors, indent)
  local summary = M.summary(v)
  if summary then return paint(opts, "object", summary) end
  if type(v) == "table" then return format_table(v, opts, depth, ancestors, indent) end
  return scalar(v, opts)
end

local function with_defaults(opts)
  opts = opts or {}
  return {
    color = opts.color == true,
    max_depth = opts.max_depth or 4,
    max_items = opts.max_items or 40,
    width = opts.width or 100,
    max_total = opts.max_total or 1000,
  }
end

function M.format(v, opts)
  opts = with_defaults(opts)
  opts.remaining = opts.max_total
  return format_value(v, opts, 0, {}, "")
end

function M.format_values(opts, n, ...)
  opts = with_defaults(opts)
  local out = {}
  for i = 1, n do
    opts.remaining = opts.max_total
    out[i] = format_value((select(i, ...)), opts, 0, {}, "")
  end
  return table.concat(out, "\n")
end

return M
