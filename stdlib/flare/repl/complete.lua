-- flare.repl.complete: Tab completion for the prompt.
--
--   complete(before_cursor, env) -> start, candidates
--
-- start is the 1-based position in before_cursor of the word being completed;
-- candidates are full replacements for it, sorted. Completes globals and
-- keywords, fields and methods (following __index tables, and the lazily
-- loaded flare.<module> names), module names after require(", and deployment
-- ids after <expr>.deployments:get(" by asking that manager's list() (cached
-- for a few seconds, errors ignored).
--
-- It offers the public surface: names starting with "_" (private fields and
-- metamethods) and constructors an object inherits from its class (new) appear
-- only once the word being completed starts with "_".
local M = {}

local ok_support, support = pcall(require, "flare.repl")
if not ok_support then support = nil end

local keywords = {
  "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
  "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
}

local function is_identifier(k)
  return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil
end

local function sorted_unique(list)
  local seen, out = {}, {}
  for _, v in ipairs(list) do
    if not seen[v] then
      seen[v] = true
      out[#out + 1] = v
    end
  end
  table.sort(out)
  return out
end

local function starting_with(list, prefix)
  local out = {}
  for _, v in ipairs(list) do
    if v:sub(1, #prefix) == prefix then out[#out + 1] = v end
  end
  return sorted_unique(out)
end

-- Module names under dir (a.b for dir/a/b.lua and dir/a/b/init.lua), a few levels deep.
local function modules_under(dir, prefix, depth, out)
  if not support or depth > 3 then return end
  local files, dirs = support.list_dir(dir)
  for _, f in ipairs(files) do
    local name = f:match("^([%w_%-]+)%.lua$")
    if name and name ~= "init" then out[#out + 1] = prefix .. name end
    if name == "init" and prefix ~= "" then out[#out + 1] = prefix:sub(1, -2) end
  end
  for _, d in ipairs(dirs) do
    if d:match("^[%w_%-]+$") then modules_under(dir .. "/" .. d, prefix .. d .. ".",
      depth + 1, out) end
  end
end

-- Directories holding modules: the roots of package.path's "?.lua" templates.
local function search_roots()
  local roots, seen = {}, {}
  for template in package.path:gmatch("[^;]+") do
    local root = template:match("^(.-)/?%?%.lua$")
    if root then
      if root == "" then root = "." end
      if not seen[root] then
        seen[root] = true
        roots[#roots + 1] = root
      end
    end
  end
  return roots
end

function M.module_names()
  local names = {}
  for _, root in ipairs(search_roots()) do modules_under(root, "", 1, names) end
  for name in pairs(package.preload) do names[#names + 1] = name end
  for name in pairs(package.loaded) do
    if type(name) == "string" then names[#names + 1] = name end
  end
  return sorted_unique(names)
end

-- The flare.<name> modules that load on first use.
local function flare_module_names()
  local names = {}
  if support then
    for _, n in ipairs(support.c_modules()) do names[#names + 1] = n end
  end
  for _, m in ipairs(M.module_names()) do
    local n = m:match("^flare%.([%w_]+)$")
    if n then names[#names + 1] = n end
  end
  return names
end

local constructors = { new = true }

-- Field names of v: its own keys and those of its __index tables. Without
-- show_private, no "_" names and no inherited constructors.
local function field_names(v, methods_only, show_private)
  local names, seen_tables = {}, {}
  local is_flare = v == rawget(_G, "flare")
  local function add_table(t, inherited)
    if type(t) ~= "table" or seen_tables[t] then return end
    seen_tables[t] = true
    for k, val in pairs(t) do
      if is_identifier(k) and (not methods_only or type(val) == "function")
        and (show_private or (k:sub(1, 1) ~= "_" and not (inherited and constructors[k]))) then
        names[#names + 1] = k
      end
    end
  end
  local current, hops = v, 0
  while current ~= nil and hops < 10 do
    if type(current) == "table" then add_table(current, hops > 0) end
    local mt = getmetatable(current)
    if type(mt) ~= "table" then break end
    local index = rawget(mt, "__index")
    if type(index) ~= "table" then break end
    current, hops = index, hops + 1
  end
  if type(v) == "string" then add_table(string) end
  if is_flare and not methods_only then
    for _, n in ipairs(flare_module_names()) do names[#names + 1] = n end
  end
  return names
end

-- Walks a.b.c from the globals; nil when any step fails or is not indexable.
local function resolve(path, env)
  local v = env
  for name in path:gmatch("[^%.]+") do
    if not is_identifier(name) then return nil end
    local t = type(v)
    if t ~= "table" and t ~= "userdata" and t ~= "string" then return nil end
    local ok, next_v = pcall(function() return v[name] end)
    if not ok then return nil end
    v = next_v
  end
  return v
end

-- Deployment ids of a DeploymentManager, cached per manager for a few seconds.
local id_cache = setmetatable({}, { __mode = "k" })
M.id_cache_seconds = 5

local function clock()
  local flare_global = rawget(_G, "flare")
  if type(flare_global) == "table" and type(rawget(flare_global, "clock")) == "function" then
    return flare_global.clock()
  end
  return os.clock()
end

local function id_of(item)
  if type(item) == "string" then return item end
  if type(item) ~= "table" then return nil end
  local id = rawget(item, "deployment_id") or rawget(item, "id")
  if type(id) == "string" then return id end
  local name = rawget(item, "name")
  if type(name) == "string" then return name:match("([^/]+)$") end
  return nil
end

function M.deployment_ids(manager)
  local now = clock()
  local cached = id_cache[manager]
  if cached and now - cached.at < M.id_cache_seconds then return cached.ids end
  local ids = {}
  local ok, list = pcall(function() return manager:list() end)
  if ok and type(list) == "table" then
    local items = list
    if #list == 0 and type(rawget(list, "deployments")) == "table" then items = list.deployments end
    for _, item in ipairs(items) do
      local id = id_of(item)
      if id then ids[#ids + 1] = id end
    end
  end
  ids = sorted_unique(ids)
  id_cache[manager] = { at = now, ids = ids }
  return ids
end

function M.complete(line, env)
  env = env or _G
  -- require("mod.na
  local req_start, req_word = line:match("require%s*%(?%s*[\"']()([%w_%.%-]*)$")
  if req_start then return req_start, starting_with(M.module_names(), req_word) end

  -- <expr>.deployments:get("id-pre
  local mgr_path, id_start,
    id_word = line:match("([%a_][%w_%.]*)%s*:%s*get%s*%(%s*[\"']()([^\"']*)$")
  if mgr_path then
    local manager = resolve(mgr_path, env)
    if mgr_path:match("deployments$") and type(manager) == "table" then
      return id_start, starting_with(M.deployment_ids(manager), id_word)
    end
    return id_start, {}
  end

  -- a.b.c:wo / a.b.wo / wo
  local expr_start, expr = line:match("()([%a_][%w_]*[%w_%.:]*)$")
  if not expr then return #line + 1, {} end
  local before = line:sub(1, expr_start - 1)
  -- Part of a number (1e5x), or a field of something that is not a name (t[1].x, f().x).
  if before:match("[%w_]$") or (before:match("[%.:]$") and not before:match("%.%.$")) then
    return #line + 1, {}
  end
  local head, sep, word = expr:match("^(.-)([%.:])([%w_]*)$")
  if not head then
    local names = {}
    for _, k in ipairs(keywords) do names[#names + 1] = k end
    for _, k in ipairs(field_names(env, false, expr:sub(1, 1) == "_")) do names[#names + 1] = k end
    return expr_start, starting_with(names, expr)
  end
  if head:find(":", 1, true) then return #line + 1, {} end
  local target = resolve(head, env)
  if target == nil then return #line + 1, {} end
  local names = starting_with(field_names(target, sep == ":", word:sub(1, 1) == "_"), word)
  if #names == 1 then
    local ok, value = pcall(function() return target[names[1]] end)
    if ok and type(value) == "function" then names[1] = names[1] .. "(" end
  end
  return #line - #word + 1, names
end

return M
