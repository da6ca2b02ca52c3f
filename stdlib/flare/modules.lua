-- flare.modules: which shared modules a run used, where they came from, and the checks
-- built on that record.
--
--   modules.record()            {[name] = {path =, sha256 =, rock =, version =}} for every
--                               module in package.loaded that came from a file outside the
--                               stdlib (rock and version when a LuaRocks tree installed it)
--   modules.rock_trees()        the LuaRocks trees `require` searches, in its order
--   modules.installed(rock)     version, tree of the rock `require` would load, or nil
--   modules.read_lock(path)     the pins of a luarocks.lock: {[rock] = version}
--   modules.lock_warnings(path) one line per pinned rock whose installed version differs
--   modules.replay_problems(config)  one line per module of a run record whose source is
--                               not the one recorded (missing, or another sha256)
--   modules.replay_problems_of(run_dir)  the same for RUN_DIR/config.json, and its script
--   modules.replay_of           RUN_DIR while `flare run --replay RUN_DIR` runs (config.json's
--                               replay_of), else nil
--
-- The trees are read from package.path, which the host builds (`flare version` lists
-- them): an entry <root>/share/lua/5.1/?.lua is the tree <root>, whose manifest
-- <root>/lib/luarocks/rocks-5.1/manifest says which rock installed which module.
local checks = require("flare.args")
local fs = require("flare.fs")

local M = {}

local ROCKS_SUBDIR = "/lib/luarocks/rocks-5.1"

function M.rock_trees()
  local trees, seen = {}, {}
  for entry in package.path:gmatch("[^;]+") do
    local root = entry:match("^(.+)/share/lua/5%.1/%?%.lua$")
    if root and not seen[root] then
      seen[root] = true
      trees[#trees + 1] = root
    end
  end
  return trees
end

-- LuaRocks writes its manifests and luarocks.lock as Lua source (assignments, or a
-- returned table). They run with an empty environment, and precompiled chunks are refused:
-- what they can do is set their own fields. Returns the environment and what the chunk
-- returned, or nil and a message.
local function load_lua_data(path)
  local text, err = fs.read_file(path)
  if not text then return nil, err end
  if text:sub(1, 1) == "\27" then return nil, path .. ": a precompiled chunk, not Lua source" end
  local chunk, perr = loadstring(text, "=" .. path)
  if not chunk then return nil, perr end
  local env = {}
  setfenv(chunk, env)
  local ok, value = pcall(chunk)
  if not ok then return nil, tostring(value) end
  return env, value
end

local function load_manifest(root)
  return (load_lua_data(root .. ROCKS_SUBDIR .. "/manifest"))
end

local function split_rock(entry)  -- "flare-evals/1.0-1" -> "flare-evals", "1.0-1"
  return entry:match("^(.-)/(.+)$")
end

-- The version of `rock` a tree deploys: its only one, or the one its modules resolve to
-- when several are installed side by side.
local function deployed_version(manifest, rock)
  local versions = manifest.repository and manifest.repository[rock]
  if type(versions) ~= "table" then return nil end
  local list = {}
  for v in pairs(versions) do list[#list + 1] = v end
  if #list == 1 then return list[1] end
  for _, providers in pairs(manifest.modules or {}) do
    local r, v = split_rock(providers[1] or "")
    if r == rock then return v end
  end
  table.sort(list)
  return list[#list]
end

function M.installed(rock)
  for _, root in ipairs(M.rock_trees()) do
    local manifest = load_manifest(root)
    local version = manifest and deployed_version(manifest, rock)
    if version then return version, root end
  end
  return nil
end

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  return fs.cwd() .. "/" .. path:gsub("^%./", "")
end

local function under(path, dir)
  return dir ~= nil and path:sub(1, #dir + 1) == dir .. "/"
end

local function stdlib_root()
  local p = package.searchpath("flare.recipe", package.path)
  return p and absolute(p):match("^(.*)/flare/recipe%.lua$")
end

-- The file `require(name)` loads now: a Lua file, a C module, or the C library of its
-- first dotted component (the all-in-one loader).
function M.find(name)
  local path = package.searchpath(name, package.path) or package.searchpath(name, package.cpath)
  if not path and name:find(".", 1, true) then
    path = package.searchpath(name:match("^[^.]+"), package.cpath)
  end
  return path and absolute(path)
end

local function describe(name, path, manifests)
  local entry = {path = path, sha256 = fs.sha256_file(path)}
  for _, root in ipairs(M.rock_trees()) do
    if under(path, root) then
      if manifests[root] == nil then manifests[root] = load_manifest(root) or false end
      local providers = manifests[root] and manifests[root].modules and
        manifests[root].modules[name]
      if providers and providers[1] then entry.rock, entry.version = split_rock(providers[1]) end
      break
    end
  end
  return entry
end

-- The record of the given names as `require` would find them now, leaving out files
-- under skip_dir.
local function record_names(names, skip_dir)
  local out, manifests = {}, {}
  for _, name in ipairs(names) do
    local path = M.find(name)
    if path and not under(path, skip_dir) then out[name] = describe(name, path, manifests) end
  end
  return out
end

-- LuaJIT's own libraries: no file to record.
local builtin = {_G = true, string = true, table = true, math = true, io = true, os = true,
  coroutine = true, debug = true, package = true, bit = true, jit = true, ffi = true}

function M.record()
  local names = {}
  for name in pairs(package.loaded) do
    if type(name) == "string" and not builtin[name] and not name:match("^jit%.") and
      not package.preload[name] then
      names[#names + 1] = name
    end
  end
  return record_names(names, stdlib_root())
end

function M.read_lock(path)
  local env, value = load_lua_data(path)
  if not env then return nil, value end
  local lock = type(value) == "table" and value or env
  local pins = {}
  for rock, version in pairs(type(lock.dependencies) == "table" and lock.dependencies or {}) do
    if rock ~= "lua" and type(version) == "string" then pins[rock] = version end
  end
  return pins
end

function M.lock_warnings(path)
  local pins, err = M.read_lock(path)
  if not pins then return {path .. ": cannot read the lock (" .. tostring(err) .. ")"} end
  local names = {}
  for rock in pairs(pins) do names[#names + 1] = rock end
  table.sort(names)
  local lines = {}
  for _, rock in ipairs(names) do
    local version, root = M.installed(rock)
    if not version then
      lines[#lines + 1] = string.format("%s pins %s %s, which is not installed in any tree",
        path, rock, pins[rock])
    elseif version ~= pins[rock] then
      lines[#lines + 1] = string.format("%s pins %s %s, but %s is installed (%s)", path, rock,
        pins[rock], version, root)
    end
  end
  return lines
end

local function short(sha) return tostring(sha):sub(1, 12) end

local function origin(entry)
  if entry.rock then return entry.rock .. " " .. tostring(entry.version) .. ", " .. entry.path end
  return entry.path
end

function M.replay_problems(config)
  local problems = {}
  local names = {}
  for name in pairs(type(config.modules) == "table" and config.modules or {}) do
    names[#names + 1] = name
  end
  table.sort(names)
  local now = record_names(names)
  for _, name in ipairs(names) do
    local was, is = config.modules[name], now[name]
    if not is then
      problems[#problems + 1] = string.format("module %s (%s) is not found now", name,
        origin(was))
    elseif is.sha256 ~= was.sha256 then
      problems[#problems + 1] = string.format(
        "module %s changed: the run used sha256 %s (%s), now %s (%s)", name, short(was.sha256),
        origin(was), short(is.sha256), origin(is))
    end
  end
  return problems
end

-- replay_problems of RUN_DIR/config.json, and a line when the script itself changed.
function M.replay_problems_of(run_dir)
  local json = require("flare.json")
  local path = run_dir .. "/config.json"
  local config = json.decode(assert(fs.read_file(path)))
  local problems = M.replay_problems(config)
  if config.script and config.script_sha256 then
    local now = fs.exists(config.script) and fs.sha256_file(config.script)
    if now ~= config.script_sha256 then
      table.insert(problems, 1, string.format("script %s changed: the run used sha256 %s, now %s",
        config.script, short(config.script_sha256), now and short(now) or "(missing)"))
    end
  end
  return problems
end

-- Arguments are checked before each call (a misuse raises invalid_argument naming the field).
return checks.checked(M, "flare.modules", {
  installed = {"rock:string"},
  find = {"name:string"},
  read_lock = {"path:string"},
  lock_warnings = {"path:string"},
  replay_problems = {"config:table"},
  replay_problems_of = {"run_dir:string"},
})
