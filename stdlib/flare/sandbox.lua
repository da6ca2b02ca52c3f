-- flare.sandbox: code you did not write, run with only the capabilities granted (docs/sandbox.md).
--
--   flare run --sandbox [--allow-prefix P] [--allow-read DIR] ... FILE
--                                  a whole script; the process is sandboxed too (Landlock,
--                                  limits, API checks in C++)
--   flare.sandbox.require(name, {allow_prefix =, read =, write =, run_dir =})
--                                  one shared module inside a trusted script: the language-level
--                                  checks below, and the API checks while its functions run
--
-- The language level: a fresh global table per sandbox; no ffi, debug, jit, C modules,
-- package.loadlib, os.execute, io.popen, string.dump or bytecode (load is text only); getfenv
-- and setfenv reach only the sandbox's own functions; getmetatable/setmetatable only the
-- sandbox's own metatables (not the string metatable, not flare's classes); io.open, loadfile,
-- os.remove and flare.fs check the resolved path (symlinks and .. included) against the granted
-- folders; require loads Lua files from the sandbox's folders into its own package.loaded; flare
-- modules are the sandbox's own copies; os.getenv gives nothing for secrets.
-- Each refusal raises {code = "sandbox_denied", capability =, grant =, message =}.
local native = require("flare.sandbox_native")

local M = {}

-- Captured before any sandboxed code runs.
local real_load, real_loadfile, real_setfenv, real_getfenv = load, loadfile, setfenv, getfenv
local real_getmetatable, real_setmetatable = getmetatable, setmetatable
local real_require, real_pcall, real_error, real_type = require, pcall, error, type
local real_open, real_lines, real_getenv = io.open, io.lines, os.getenv
local real_remove, real_rename = os.remove, os.rename
local real_collect = collectgarbage
local real_string, real_flare = string, flare
local pairs, select, tostring, rawget = pairs, select, tostring, rawget

local function bad_argument(n, fname, expected)
  real_error("bad argument #" .. n .. " to '" .. fname .. "' (" .. expected .. " expected)", 3)
end

-- The string metatable gives every string the string library's functions: without
-- string.dump, and through a table sandboxed code cannot reach.
do
  local mt = real_getmetatable("")
  local methods = real_setmetatable({}, {__index = function(_, k)
    if k ~= "dump" then return real_string[k] end
  end, __newindex = function() real_error("string methods are read-only", 2) end,
    __metatable = false})
  mt.__index = methods
end

local function denied(capability, what, grant)
  local ok, e = real_pcall(real_flare.error, {code = "sandbox_denied",
    message = "sandbox: " .. capability .. " denied: " .. what .. " (grant: " .. grant .. ")"})
  if real_type(e) == "table" then e.capability, e.grant = capability, grant end
  real_error(ok and "sandbox_denied" or e, 3)
end

local NOT_GRANTABLE = "not grantable; run the script without --sandbox"
local SECRET = {"KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL", "AUTH"}

local function copy(t, skip)
  local c = {}
  for k, v in pairs(t) do
    if not (skip and skip[k]) then c[k] = v end
  end
  return c
end

local Box = {}
Box.__index = Box

-- A sandbox: opts.read / opts.write (canonical folders), opts.search (folders of its modules),
-- opts.args (its `arg`), opts.policy (flare.sandbox.require's API policy id).
function M._new(opts)
  local box = real_setmetatable({read = opts.read or {}, write = opts.write or {},
    search = opts.search or {}, policy = opts.policy, record_modules = opts.record_modules,
    owned = real_setmetatable({}, {__mode = "k"}),
    envs = real_setmetatable({}, {__mode = "k"}), flare_members = {}}, Box)
  box.env = box:_make_env(opts.args)
  return box
end

function Box:check(path, mode)
  if real_type(path) ~= "string" then
    real_error("bad argument: path must be a string, got " .. real_type(path), 3)
  end
  return native.check_path(path, mode, mode == "w" and self.write or self.read)
end

function Box:_open(path, mode)
  mode = mode or "r"
  local writing = mode:find("[wa+]") ~= nil
  local real = self:check(path, writing and "w" or "r")
  return real_open(real, mode)
end

function Box:_bind(fn)
  if real_type(fn) == "function" then real_setfenv(fn, self.env) end
  return fn
end

function Box:loadfile(path)
  local real = self:check(path, "r")
  local fn, err = real_loadfile(real, "t")
  if not fn then return nil, err end
  return self:_bind(fn)
end

function Box:_load(chunk, name, _, env)
  if real_type(chunk) == "string" and chunk:byte(1) == 27 then
    denied("bytecode", "load of precompiled bytecode", NOT_GRANTABLE)
  end
  local fn, err = real_load(chunk, name, "t")
  if not fn then
    if tostring(err):find("binary", 1, true) then
      denied("bytecode", "load of precompiled bytecode", NOT_GRANTABLE)
    end
    return nil, err
  end
  if env ~= nil then
    if real_type(env) ~= "table" then bad_argument(4, "load", "table") end
    self.envs[env] = true
    real_setfenv(fn, env)
    return fn
  end
  return self:_bind(fn)
end

-- The environment of a function or stack level, if it is the sandbox's own.
function Box:_own_env(e)
  return e == self.env or self.envs[e]
end

function Box:_getfenv(f)
  if f == nil then f = 1 end
  if f == 0 then
    denied("getfenv", "the thread's environment (the host's globals)", NOT_GRANTABLE)
  end
  -- Levels count from the sandboxed caller: this function and env.getfenv are two more.
  local e = real_getfenv(real_type(f) == "number" and f + 2 or f)
  if self:_own_env(e) then return e end
  denied("getfenv", "the environment of a function outside the sandbox", NOT_GRANTABLE)
end

function Box:_setfenv(f, t)
  if f == 0 then denied("setfenv", "the thread's environment", NOT_GRANTABLE) end
  if real_type(t) ~= "table" then bad_argument(2, "setfenv", "table") end
  local level = real_type(f) == "number" and f + 2 or nil
  local e = real_getfenv(level or f)
  if not self:_own_env(e) then
    denied("setfenv", "setfenv on a function outside the sandbox", NOT_GRANTABLE)
  end
  self.envs[t] = true
  if level then
    return real_setfenv(level, t)
  end
  return real_setfenv(f, t)
end

-- Only metatables the sandbox set (so not the string metatable, nor flare's classes).
function Box:_getmetatable(v)
  local mt = real_getmetatable(v)
  if mt == nil or self.owned[mt] then return mt end
  if real_type(mt) ~= "table" then return mt end  -- a __metatable value
  return nil
end

function Box:_setmetatable(t, mt)
  if real_type(t) ~= "table" then bad_argument(1, "setmetatable", "table") end
  local cur = real_getmetatable(t)
  if cur ~= nil and not self.owned[cur] then
    denied("metatables", "replacing the metatable of a table the sandbox did not make",
      NOT_GRANTABLE)
  end
  if mt ~= nil then
    if real_type(mt) ~= "table" then bad_argument(2, "setmetatable", "nil or table") end
    self.owned[mt] = true
  end
  return real_setmetatable(t, mt)
end

local DENIED_MODULES = {
  ffi = {"ffi", "the FFI reaches any C function and memory"},
  debug = {"debug", "the debug library reads and changes any function's upvalues and locals"},
  jit = {"jit", "the JIT's control and introspection"},
  ["flare.proc"] = {"process", "child processes"},
  ["flare.emulator"] = {"emulator", "starting an emulator (flare.connect() starts one)"},
  ["flare.sandbox"] = {"sandbox", "a sandbox inside a sandbox"},
  ["flare.sandbox_native"] = {"sandbox", "the sandbox's own controls"},
  ["flare.delta"] = {"files", "flare.delta's file functions (weight syncing uses it for you)"},
  ["flare.test"] = {"files", "the spec runner"},
}

local function deny_module(name)
  local d = DENIED_MODULES[name] or (name:match("^jit%.") and DENIED_MODULES.jit) or
    (name:match("^flare%.repl") and {"repl", "the REPL's internals"})
  if d then denied(d[1], "require(\"" .. name .. "\"): " .. d[2], NOT_GRANTABLE) end
end

-- A flare module as the sandbox sees it: its own table, reading through to the real one.
local function module_copy(m)
  if real_type(m) ~= "table" then return m end
  local mt = real_getmetatable(m)
  local c = copy(m)
  local call = mt and real_type(mt) == "table" and mt.__call
  return real_setmetatable(c, {__index = m,
    __call = call and function(_, ...) return m(...) end or nil})
end

function Box:_fs()
  local fs = real_require("flare.fs")
  local c = copy(fs)
  local box = self
  -- (exists and is_dir answer false outside the folders, in C++, while a policy is in force)
  for _, name in ipairs{"read_file", "list_dir", "sha256_file"} do
    local f = fs[name]
    c[name] = function(path, ...) return f(box:check(path, "r"), ...) end
  end
  for _, name in ipairs{"write_file_atomic", "append_line", "mkdir_p", "remove"} do
    local f = fs[name]
    c[name] = function(path, ...) return f(box:check(path, "w"), ...) end
  end
  return c
end

-- A flare.* name is flare's own only when it is a C module or a file of the stdlib: the host's
-- require would otherwise find it in the sandbox's folders and run it as trusted code.
local function stdlib_module(name)
  if package.preload[name] or package.loaded[name] then return true end
  local stdlib = native.stdlib_dir()
  return package.searchpath(name, stdlib .. "/?.lua;" .. stdlib .. "/?/init.lua") ~= nil
end

function Box:_flare_member(name)
  local cached = self.flare_members[name]
  if cached ~= nil then return cached end
  deny_module("flare." .. name)
  -- Fields of the flare table itself (version, api_version, sleep, ...), else its modules.
  if rawget(real_flare, name) == nil and not stdlib_module("flare." .. name) then return nil end
  local v
  if name == "fs" then
    v = self:_fs()
  elseif name == "connect" then
    local connect, box = real_flare.connect, self
    v = function(opts)
      if real_type(opts) == "table" and opts.state_dir then box:check(opts.state_dir, "w") end
      return connect(opts)
    end
  else
    v = module_copy(real_flare[name])
  end
  if v ~= nil then self.flare_members[name] = v end
  return v
end

function Box:_find_module(name)
  local rel = name:gsub("%.", "/")
  for _, dir in ipairs(self.search) do
    for _, pat in ipairs{"/?.lua", "/?/init.lua"} do
      local path = dir .. pat:gsub("%?", rel)
      if native.exists(path) then return path end  -- loadfile checks where it really is
    end
  end
end

function Box:_require(name)
  if real_type(name) ~= "string" then bad_argument(1, "require", "string") end
  local loaded = self.package.loaded
  if loaded[name] ~= nil then return loaded[name] end
  deny_module(name)
  local v
  if name == "flare" then
    v = self.env.flare
  elseif name:match("^flare%.") and not stdlib_module(name) then
    real_error("module '" .. name .. "' is not one of flare's", 2)
  elseif name:match("^flare%.") and not name:find("%.", 7) then
    v = self:_flare_member(name:sub(7))
  elseif name:match("^flare%.") then
    local ok, m = real_pcall(real_require, name)
    if not ok then real_error(m, 2) end
    v = module_copy(m)
  elseif self.package.preload[name] then
    v = self.package.preload[name](name)
  else
    local path = self:_find_module(name)
    if not path then
      real_error("module '" .. name .. "' not found in the sandbox's folders (C modules are " ..
        "not loaded in the sandbox)", 2)
    end
    local fn, err = self:loadfile(path)
    if not fn then real_error(err, 2) end
    v = fn(name)
    if v == nil then v = loaded[name] == nil and true or loaded[name] end
    -- Under `flare run --sandbox` the run's record (config.json's modules) lists it too.
    if self.record_modules then package.loaded[name] = v end
  end
  if v == nil then v = loaded[name] == nil and true or loaded[name] end
  loaded[name] = v
  return v
end

local function secret_name(name)
  local up = tostring(name):upper()
  for _, w in ipairs(SECRET) do
    if up:find(w, 1, true) then return true end
  end
  return false
end

function Box:_make_env(args)
  local box = self
  local env = {}
  for _, k in ipairs{"assert", "error", "ipairs", "next", "pairs", "pcall", "xpcall", "select",
    "tonumber", "tostring", "type", "unpack", "rawequal", "rawget", "rawset", "print", "gcinfo",
    "_VERSION"} do
    env[k] = _G[k]
  end
  env.string = copy(real_string, {dump = true})
  env.table, env.math, env.coroutine = copy(table), copy(math), copy(coroutine)
  env.bit = copy(bit)
  env.os = {clock = os.clock, time = os.time, date = os.date, difftime = os.difftime,
    getenv = function(name)
      if secret_name(name) then return nil end
      return real_getenv(name)
    end,
    remove = function(path) return real_remove(box:check(path, "w")) end,
    rename = function(a, b) return real_rename(box:check(a, "w"), box:check(b, "w")) end,
    execute = function() denied("process", "os.execute", NOT_GRANTABLE) end,
    exit = function() denied("process", "os.exit (the script ends by returning or error())",
      NOT_GRANTABLE) end,
    tmpname = function() denied("files.write", "os.tmpname (write under the run directory)",
      "--allow-write DIR") end,
  }
  env.io = {write = io.write, read = io.read, stdout = io.stdout, stderr = io.stderr,
    stdin = io.stdin, type = io.type,
    open = function(path, mode) return box:_open(path, mode) end,
    lines = function(path, ...)
      if path == nil then return real_lines() end
      return real_lines(box:check(path, "r"), ...)
    end,
    popen = function() denied("process", "io.popen", NOT_GRANTABLE) end,
    input = function() denied("files.read", "io.input (use io.open)", NOT_GRANTABLE) end,
    output = function() denied("files.write", "io.output (use io.open)", NOT_GRANTABLE) end,
  }
  env.collectgarbage = function(opt, arg)
    if opt == nil or opt == "collect" or opt == "count" or opt == "step" then
      return real_collect(opt, arg)
    end
    denied("gc", "collectgarbage(\"" .. tostring(opt) .. "\")", NOT_GRANTABLE)
  end
  env.load = function(chunk, name, mode, e) return box:_load(chunk, name, mode, e) end
  env.loadstring = function(s, name) return box:_load(s, name) end
  env.loadfile = function(path) return box:loadfile(path) end
  env.dofile = function(path)
    local fn, err = box:loadfile(path)
    if not fn then real_error(err, 2) end
    return fn()
  end
  -- Not tail calls: the stack levels _getfenv and _setfenv count on.
  env.getfenv = function(f)
    local e = box:_getfenv(f)
    return e
  end
  env.setfenv = function(f, t)
    local r = box:_setfenv(f, t)
    return r
  end
  env.getmetatable = function(v) return box:_getmetatable(v) end
  env.setmetatable = function(t, mt) return box:_setmetatable(t, mt) end
  env.require = function(name) return box:_require(name) end
  self.package = {loaded = {}, preload = {}, path = "", cpath = "", config = package.config,
    loadlib = function() denied("c_modules", "package.loadlib", NOT_GRANTABLE) end}
  env.package = self.package
  env.flare = real_setmetatable({}, {__index = function(_, k)
    if real_type(k) ~= "string" then return nil end
    return box:_flare_member(k)
  end, __metatable = false})
  env.arg = args and copy(args) or {}
  env._G = env
  for _, k in ipairs{"string", "table", "math", "coroutine", "bit", "os", "io", "package"} do
    self.package.loaded[k] = env[k]
  end
  self.package.loaded._G = env
  local globals = {debug = "debug", ffi = "ffi", jit = "jit", newproxy = "debug",
    module = "c_modules"}
  real_setmetatable(env, {__index = function(_, k)
    if globals[k] then
      denied(globals[k], "the global '" .. k .. "'", NOT_GRANTABLE)
    end
  end, __metatable = false})
  return env
end

-- `flare run --sandbox FILE ARGS...` (sandbox_runner.cpp): the trusted side requires only the
-- stdlib from now on; the script runs in its own sandbox.
function M._main(script, ...)
  local cfg = native.process_config()
  -- The host's require: the stdlib first (a sandboxed file never shadows a flare module); the
  -- sandbox's folders after it, only so that flare.modules can name the files of the run's record.
  local stdlib = native.stdlib_dir()
  local path = stdlib .. "/?.lua;" .. stdlib .. "/?/init.lua"
  for _, d in ipairs(cfg.search) do path = path .. ";" .. d .. "/?.lua;" .. d .. "/?/init.lua" end
  package.path, package.cpath = path, ""
  local args = {[-1] = "flare", [0] = script, ...}
  _G.arg = args
  local box = M._new{read = cfg.read, write = cfg.write, search = cfg.search, args = args,
    record_modules = true}
  local fn, err = box:loadfile(script)
  if not fn then
    if tostring(err):find("binary", 1, true) then
      denied("bytecode", "a precompiled script", NOT_GRANTABLE)
    end
    real_error(err, 0)
  end
  return native.protected_run(fn, ...)
end

-- flare.sandbox.require(name, opts): the module `name` (found on package.path) loaded into a
-- sandbox of its own; reads under its folder (and opts.read, opts.run_dir), writes under
-- opts.write and opts.run_dir; its functions run with the API checks in force (opts.allow_prefix,
-- a string or a list, for deployment and trainer ids), each call into it for at most
-- opts.time_limit_s seconds. Returns the module, whose functions
-- (and those of its tables, one level down) are called through the checks.
local required = {}
function M.require(name, opts)
  opts = opts or {}
  if required[name] then return required[name] end
  local path = package.searchpath(name, package.path)
  if not path then real_error("flare.sandbox.require: module '" .. name .. "' not found", 2) end
  local file_dir = path:match("^(.*)/[^/]*$") or "."
  local rel = name:gsub("%.", "/")
  local root = path:sub(1, #path - #(rel .. ".lua")):gsub("/$", "")
  if path:sub(-#"/init.lua") == "/init.lua" then root = file_dir:sub(1, #file_dir - #rel) end
  root = root ~= "" and root or "."
  local function canon(list)
    local out = {}
    for _, d in ipairs(list) do
      local ok, c = real_pcall(native.check_path, d, "r", {"/"})
      if ok then out[#out + 1] = c end
    end
    return out
  end
  local read = canon({root, opts.run_dir})
  for _, d in ipairs(canon(opts.read or {})) do read[#read + 1] = d end
  local write = canon({opts.run_dir})
  for _, d in ipairs(canon(opts.write or {})) do write[#write + 1] = d; read[#read + 1] = d end
  local prefixes = opts.allow_prefix
  if real_type(prefixes) == "string" then prefixes = {prefixes} end
  local policy = native.new_policy{prefixes = prefixes or {}, read = read, write = write,
    time_limit_s = opts.time_limit_s}
  local box = M._new{read = read, write = write, search = canon({root}), policy = policy,
    args = {}}
  local fn, err = box:loadfile(path)
  if not fn then real_error(err, 2) end
  -- What the module hands back runs with its policy in force: its functions, the functions in
  -- its plain tables, and the functions those return, one level of tables down each time.
  local guard, pass
  function guard(f)
    return function(...) return pass(native.scope_call(policy, f, ...)) end
  end
  local function wrap(v, depth)
    if real_type(v) == "function" then return guard(v) end
    if real_type(v) ~= "table" or real_getmetatable(v) ~= nil or depth > 1 then return v end
    local t = {}
    for k, x in pairs(v) do t[k] = wrap(x, depth + 1) end
    return t
  end
  function pass(...)
    local n = select("#", ...)
    if n == 0 then return end
    local out = {...}
    for i = 1, n do out[i] = wrap(out[i], 0) end
    return unpack(out, 1, n)
  end
  local out = wrap(native.scope_call(policy, fn, name), 0)
  required[name] = out
  return out
end

require("flare.args").checked(M, "flare.sandbox", {
  require = {"name:string", {"opts", {allow_prefix = "string|table", read = "table",
    write = "table", run_dir = "string", time_limit_s = "number"}}},
})
return M
