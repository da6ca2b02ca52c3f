-- Known ways out of Lua sandboxes, each tried by a script run with `flare run --sandbox`.
-- A script prints ESCAPED when its attack worked and BLOCKED when it saw it fail without an
-- error; a refusal is an error naming the capability. Every case checks the one outcome that
-- shows the attack failed.
local proc = require("flare.proc")
local fs = require("flare.fs")

local KEY = "fw-test-key-0123456789abcdef"
local root, box, outside

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- Runs code as box/escape.lua in the sandbox; returns the proc result.
local function run(code, opts)
  opts = opts or {}
  write(box .. "/escape.lua", code)
  local argv = {"/proc/self/exe", "run", "--sandbox", "--run-dir", box .. "/runs"}
  for _, a in ipairs(opts.flags or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = box .. "/escape.lua"
  local env = {FIREWORKS_API_KEY = opts.cloud and KEY or "", FIREWORKS_BASE_URL = "",
    FLARE_EMULATOR_URL = "", FLARE_EMULATOR_STATE_DIR = opts.state and (root .. "/state") or "",
    FLARE_RUNS_DIR = "", SANDBOX_TEST_KEY = KEY}
  for k, v in pairs(opts.env or {}) do env[k] = v end
  return proc.run{argv = argv, env = env, cwd = box, timeout_s = opts.timeout_s or 60}
end

local function no_escape(r)
  assert.falsy(r.stdout:find("ESCAPED", 1, true), r.stdout .. r.stderr)
  assert.falsy((r.stdout .. r.stderr):find(KEY, 1, true), "the key was printed")
end

local function denied(r, capability)
  no_escape(r)
  assert.equal(1, r.status, r.stdout .. r.stderr)
  assert.truthy(r.stderr:find("sandbox_denied", 1, true), r.stderr)
  assert.truthy(r.stderr:find("sandbox: " .. capability .. " denied", 1, true), r.stderr)
  assert.truthy(r.stderr:find("(grant: ", 1, true), r.stderr)
end

local function blocked(r)
  no_escape(r)
  assert.equal(0, r.status, r.stdout .. r.stderr)
  assert.truthy(r.stdout:find("BLOCKED", 1, true), r.stdout .. r.stderr)
end

-- One scratch folder for the file: box/ holds the scripts (and runs/), outside/ what they must
-- not reach; box/link and box/dirlink are symlinks into outside/.
root = "/tmp/flare-sandbox-spec-" .. fs.getpid() .. "-" .. math.floor(flare.clock() * 1e6)
box, outside = root .. "/box", root .. "/outside"
fs.mkdir_p(box .. "/runs")
fs.mkdir_p(outside)
write(outside .. "/secret.txt", "outside secret\n")
write(outside .. "/mod.lua", "print('ESCAPED: outside module ran') return {}\n")
write(box .. "/evil.so", "not really a shared object\n")
assert(proc.run{argv = {"ln", "-s", "../outside/secret.txt", box .. "/link"}}.status == 0)
assert(proc.run{argv = {"ln", "-s", outside, box .. "/dirlink"}}.status == 0)
fs.mkdir_p(box .. "/flare")
write(box .. "/flare/evil.lua", "print('ESCAPED: ran as flare code', io.popen) return {}\n")
write(box .. "/flare/tasks.lua", "print('ESCAPED: shadowed flare.tasks', io.popen) return {}\n")
flare.defer(function() fs.remove(root, {recursive = true}) end, "remove the scratch folder")

describe("flare run --sandbox: escapes", function()

  it("string.dump and load of its bytecode", function()
    local r = run([[
      assert(string.dump == nil and ("").dump == nil)
      local bc = "\27LJ\2\0\9@escape\0\0"  -- a LuaJIT bytecode header
      load(bc)
      print("ESCAPED: bytecode loaded")]])
    denied(r, "bytecode")
  end)

  it("loadstring of bytecode, and load with a reader function", function()
    local r = run([[
      local parts = {"\27LJ", "\2\0"}
      local i = 0
      local f = load(function() i = i + 1 return parts[i] end)
      if f then print("ESCAPED: bytecode through a reader") end
      loadstring("\27LJ\2")
      print("ESCAPED")]])
    denied(r, "bytecode")
  end)

  it("getmetatable(\"\").__index: the host's string table", function()
    local r = run([[
      local mt = getmetatable("")
      if mt ~= nil then mt.__index.format = function() return "ESCAPED" end print("ESCAPED") end
      string.upper = function() return "ESCAPED" end  -- the sandbox's own copy
      assert(("abc"):upper() == "ABC", "string methods reach the sandbox's string table")
      print("BLOCKED")]])
    blocked(r)
  end)

  it("getfenv(0) from a coroutine: the thread's globals", function()
    local r = run([[
      local co = coroutine.wrap(function() return getfenv(0) end)
      local g = co()
      if g and g.io and g.io.popen then print("ESCAPED") end]])
    denied(r, "getfenv")
  end)

  it("getfenv(2) in a callback called by a C function", function()
    local r = run([[
      table.sort({3, 2, 1}, function(a, b)
        local g = getfenv(2)
        if g.os.execute then print("ESCAPED") end
        return a < b
      end)]])
    denied(r, "getfenv")
  end)

  it("getfenv of a flare function: the host's globals", function()
    local r = run([[
      local g = getfenv(flare.connect)
      print("ESCAPED", g.os.execute)]])
    denied(r, "getfenv")
  end)

  it("setfenv on a function from outside the sandbox", function()
    local r = run([[
      setfenv(flare.recipe.sparkline, {})
      print("ESCAPED")]])
    denied(r, "setfenv")
  end)

  it("debug.getupvalue through a flare function's upvalues", function()
    local r = run([[
      local name, v = debug.getupvalue(flare.connect, 1)
      print("ESCAPED", name, v)]])
    denied(r, "debug")
  end)

  it("require('debug') and the jit module's introspection", function()
    denied(run([[local d = require("debug") print("ESCAPED", d)]]), "debug")
    denied(run([[local u = require("jit.util") print("ESCAPED", u)]]), "jit")
  end)

  it("require('ffi'), also planted in package.preload and package.loaded", function()
    local r = run([[
      assert(package.preload.ffi == nil and package.loaded.ffi == nil)
      package.preload.ffi = function() return {C = "ESCAPED"} end
      local ffi = require("ffi")
      print("ESCAPED", ffi)]])
    denied(r, "ffi")
  end)

  it("package.loaded poisoning does not reach flare's own modules", function()
    local r = run([[
      package.loaded["flare.jsonl"] = {append = function() print("ESCAPED: jsonl") end}
      package.loaded["flare.json"] = {encode = function() return "ESCAPED" end}
      flare.json.encode = function() return "\"ESCAPED\"" end
      string.format = function() return "ESCAPED" end
      local run = flare.recipe{name = "poison", config = {x = 1}, args = {}, progress = false}
      run:log{step = 1, x = 2}
      local text = assert(io.open(run.dir .. "/metrics.jsonl")):read("*a")
      if text:find("ESCAPED") then print("ESCAPED: " .. text) end
      print("BLOCKED", text)]])
    blocked(r)
  end)

  it("rawset on _G does not reach the host's globals", function()
    local r = run([[
      rawset(_G, "tostring", function() return "ESCAPED" end)
      _G.ipairs = function() error("ESCAPED") end
      local run = flare.recipe{name = "globals", config = {}, args = {"--dry-run"}}
      run:plan{"the plan line"}
      print("BLOCKED")]])
    blocked(r)
    assert.truthy(r.stdout:find("the plan line", 1, true), r.stdout)
  end)

  it("metatables of flare's objects (class tables) stay out of reach", function()
    local r = run([[
      local recipe_mt = getmetatable(flare.recipe)
      local json_null_mt = getmetatable(flare.json.null)
      if recipe_mt or json_null_mt then print("ESCAPED") end
      local run = flare.recipe{name = "objects", config = {}, args = {"--dry-run"}}
      local ok, e = pcall(setmetatable, run, {__index = function() return "ESCAPED" end})
      if ok then print("ESCAPED: replaced the metatable of a host object") end
      assert(e.capability == "metatables", tostring(e))
      print("BLOCKED")]])
    blocked(r)
  end)

  it("io.open on /proc/self/mem", function()
    denied(run([[local f = io.open("/proc/self/mem", "rb") print("ESCAPED", f)]]), "files.read")
  end)

  it("../ out of the script's folder", function()
    denied(run([[local f = io.open("../outside/secret.txt") print("ESCAPED", f and f:read("*a"))]]),
      "files.read")
  end)

  it("a symlink in the script's folder pointing outside", function()
    denied(run([[local f = io.open("link") print("ESCAPED", f and f:read("*a"))]]), "files.read")
    denied(run([[for l in io.lines("dirlink/secret.txt") do print("ESCAPED", l) end]]),
      "files.read")
  end)

  it("writes outside the run directory (the script's folder is read-only)", function()
    denied(run([[local f = io.open("planted.lua", "w") print("ESCAPED", f)]]), "files.write")
    denied(run([[os.rename("escape.lua", "runs/moved.lua") print("ESCAPED")]]), "files.write")
  end)

  it("flare's own file functions and the helpers built on them", function()
    local secret = outside .. "/secret.txt"
    denied(run(string.format([[flare.fs.read_file(%q) print("ESCAPED")]], secret)), "files.read")
    denied(run(string.format([[flare.recipe.read_jsonl(%q) print("ESCAPED")]], secret)),
      "files.read")
    denied(run([[flare.fs.write_file_atomic("planted.lua", "x") print("ESCAPED")]]), "files.write")
    denied(run([[flare.connect{state_dir = "/tmp/elsewhere"} print("ESCAPED")]]), "files.write")
    blocked(run([[print(flare.fs.exists("/etc/passwd") and "ESCAPED" or "BLOCKED")]]))
  end)

  it("a file in the script's folder named like a flare module never runs as flare's", function()
    local r = run([[
      assert(flare.evil == nil)
      assert(not pcall(require, "flare.evil"))
      assert(flare.tasks.get and require("flare.tasks").get, "flare.tasks is the stdlib's")
      assert(flare.api_version and flare.version and flare.sleep, "the flare table's own fields")
      print("BLOCKED")]])
    blocked(r)
  end)

  it("dofile, loadfile and require of files outside", function()
    denied(run([[dofile("/etc/passwd") print("ESCAPED")]]), "files.read")
    denied(run([[loadfile("../outside/mod.lua")() print("ESCAPED")]]), "files.read")
    local r = run([[require("dirlink.mod") print("ESCAPED")]])
    denied(r, "files.read")
  end)

  it("reading the API key from the environment", function()
    local r = run([[
      if os.getenv("FIREWORKS_API_KEY") or os.getenv("SANDBOX_TEST_KEY") then print("ESCAPED") end
      local f = io.open("/proc/self/environ")
      print("ESCAPED", f)]], {cloud = true})
    denied(r, "files.read")
  end)

  it("os.execute, io.popen and flare.proc", function()
    denied(run([[os.execute("touch /tmp/escaped") print("ESCAPED")]]), "process")
    denied(run([[io.popen("id") print("ESCAPED")]]), "process")
    denied(run([[flare.proc.run{argv = {"id"}} print("ESCAPED")]]), "process")
  end)

  it("package.loadlib and C modules on package.cpath", function()
    denied(run([[package.loadlib("./evil.so", "luaopen_evil") print("ESCAPED")]]), "c_modules")
    local cdir = os.getenv("FLARE_TEST_CMODULE_DIR")
    if cdir then  -- a real C module (tests/lua/c_module), which trusted scripts load
      local r = run(string.format([[package.cpath = %q .. "/?.so"
        local ok, m = pcall(require, "flare_test_cmodule")
        print(ok and "ESCAPED" or "BLOCKED")]], cdir), {flags = {"--allow-read", cdir}})
      blocked(r)
    end
    local r = run([[package.cpath = "./?.so" local ok, e = pcall(require, "evil")
      if ok then print("ESCAPED") end
      assert(tostring(e):find("C modules are not loaded"), e) print("BLOCKED")]])
    blocked(r)
  end)

  it("HTTP to a host that is not a configured endpoint", function()
    denied(run([[flare.http.request{url = "http://127.0.0.1:9/exfiltrate"} print("ESCAPED")]]),
      "network")
    denied(run([[flare.connect{base_url = "http://127.0.0.1:9", api_key = "x", account_id = "a"}
      print("ESCAPED")]]), "network")
  end)

  it("the GC's controls and the globals the sandbox does not have", function()
    denied(run([[collectgarbage("stop") print("ESCAPED")]]), "gc")
    denied(run([[local p = newproxy(true) print("ESCAPED", p)]]), "debug")
  end)

  it("the API key through flare.connect, and deletes outside the granted prefix", function()
    local r = run([[
      local fw = flare.connect{quiet = true}
      local found = {fw.api_key, fw._conn:api_key(), fw.emulator and fw.emulator:api_key()}
      for i = 1, 3 do if found[i] then print("ESCAPED: key " .. i) end end
      local shown = tostring(fw)
      if shown:find(os.getenv("SANDBOX_TEST_KEY") or "nope", 1, true) then print("ESCAPED") end
      fw.deployments:create_or_get{deployment_id = "team-a-demo",
        base_model = "accounts/local/models/tiny-gpt", min_replica_count = 0, max_replica_count = 1}
      fw.deployments:delete("team-a-demo")
      fw.deployments:delete("team-b-prod")
      print("ESCAPED: deleted another team's deployment")]],
      {flags = {"--allow-prefix", "team-a-"}, state = true})
    denied(r, "api.resources")
    assert.truthy(r.stderr:find("DELETE deployment 'team-b-prod'", 1, true), r.stderr)
    assert.truthy(r.stderr:find("--allow-prefix", 1, true), r.stderr)
  end)

  it("files outside through a trusted helper: Landlock refuses in the OS", function()
    if require("flare.sandbox_native").landlock_abi() == 0 then
      print("  (skipped: this kernel has no Landlock; flare says so on every sandboxed run)")
      return
    end
    -- flare.cleanup writes its log (FLARE_CLEANUP_LOG) with the host's own io.open, which no
    -- language-level check sees: only the OS stops it. Trusted, the same script writes the log.
    local code = [[flare.defer(function() end, "noop") print("ran")]]
    local log = outside .. "/cleanup.log"
    local r = run(code, {env = {FLARE_CLEANUP_LOG = log}})
    assert.equal(0, r.status, r.stderr)
    assert.falsy(fs.exists(log), "the host wrote outside the run dir")
    r = proc.run{argv = {"/proc/self/exe", "run", box .. "/escape.lua"}, cwd = box,
      env = {FLARE_CLEANUP_LOG = log}}
    assert.equal(0, r.status, r.stderr)
    assert.truthy(fs.exists(log), "the control run (trusted) did not write the log")

  end)
end)

describe("flare run --sandbox: refusals", function()
  it("are structured errors naming the capability and its grant, from Lua and from C++", function()
    local r = run([[
      local function refusal(f, ...)
        local ok, e = pcall(f, ...)
        assert(not ok and type(e) == "table" and e.code == "sandbox_denied", tostring(e))
        return e.capability .. " | " .. e.grant
      end
      print(refusal(io.open, "/etc/hostname"))
      print(refusal(flare.fs.read_file, "/etc/hostname"))
      print(refusal(os.execute, "true"))
      print(refusal(flare.http.request, {url = "http://127.0.0.1:9/"}))]])
    assert.equal(0, r.status, r.stderr)
    assert.equal("files.read | --allow-read DIR\nfiles.read | --allow-read DIR\n" ..
      "process | not grantable; run the script without --sandbox\n" ..
      "network | set FIREWORKS_BASE_URL (or FIREWORKS_INFERENCE_URL / FIREWORKS_HOTLOAD_URL) " ..
      "to it\n",
      r.stdout)
  end)
end)

describe("flare run --sandbox: the command line", function()
  it("lists its options and refuses unknown ones", function()
    local r = proc.run{argv = {"/proc/self/exe", "run", "--sandbox", "--help"}}
    assert.equal(0, r.status)
    for _, o in ipairs{"--allow-prefix", "--allow-read", "--allow-write", "--run-dir",
      "--memory-mb", "--time-limit", "--max-instructions"} do
      assert.truthy(r.stdout:find(o, 1, true), o)
    end
    r = proc.run{argv = {"/proc/self/exe", "run", "--sandbox", "--allow-everything", "x.lua"}}
    assert.equal(2, r.status)
    assert.truthy(r.stderr:find("unknown option '--allow-everything'", 1, true), r.stderr)
    r = proc.run{argv = {"/proc/self/exe", "run", "--sandbox", "--time-limit", "soon", "x.lua"}}
    assert.equal(2, r.status)
    assert.truthy(r.stderr:find("--time-limit must be a number", 1, true), r.stderr)
  end)
end)

describe("flare run --sandbox: limits", function()
  it("a wall-clock limit stops a compiled loop, also when the script catches the error", function()
    local r = run([[
      local x = 0
      while true do pcall(function() for i = 1, 1e12 do x = x + i % 3 end end) end]],
      {flags = {"--time-limit", "0.5"}})
    assert.equal(1, r.status, r.stderr)
    assert.truthy(r.stderr:find("sandbox_limit: sandbox: limits.time reached", 1, true), r.stderr)
    assert.truthy(r.stderr:find("--time-limit", 1, true), r.stderr)
  end)

  it("an instruction budget stops a loop", function()
    local r = run([[local x = 0 while true do x = x + 1 end]],
      {flags = {"--max-instructions", "2e6"}})
    assert.equal(1, r.status, r.stderr)
    assert.truthy(r.stderr:find("limits.instructions reached", 1, true), r.stderr)
  end)

  it("a memory cap stops an allocation loop", function()
    local r = run([[local t = {} for i = 1, 1e9 do t[i] = string.rep("x", 100) .. i end]],
      {flags = {"--memory-mb", "40"}})
    assert.equal(1, r.status, r.stderr)
    assert.truthy(r.stderr:find("limits.memory reached", 1, true), r.stderr)
  end)

  it("the cleanups registered by the script still run after a limit", function()
    local r = run([[
      flare.defer(function() io.open("runs/cleaned", "w"):close() end, "mark")
      local x = 0 while true do x = x + 1 end]], {flags = {"--time-limit", "0.3"}})
    assert.equal(1, r.status, r.stderr)
    assert.truthy(fs.exists(box .. "/runs/cleaned"), r.stderr)
  end)

  it("one Ctrl-C stops a compiled loop in the sandbox", function()
    write(box .. "/spin.lua", "local x = 0 while true do x = x + 1 end\n")
    local c = proc.spawn{argv = {"/proc/self/exe", "run", "--sandbox", "--run-dir",
      box .. "/runs", box .. "/spin.lua"}, cwd = box}
    flare.sleep(0.5)
    c:kill("INT")
    local r = c:wait{timeout_s = 20}
    assert.equal(130, r.status, r.stderr)
  end)
end)
