-- The cleanup contract with the host, checked on real `flare run` processes:
-- cleanups run last-in first-out on a normal end, a script error, SIGINT and SIGTERM.
local proc = require("flare.proc")
local fs = require("flare.fs")

local dir

local function write_script(body)
  local path = dir .. "/script.lua"
  fs.write_file_atomic(path, body)
  return path
end

-- Each cleanup appends "<name>:<reason>" to the log file.
local prelude = [[
local dir = ...
local fs = require("flare.fs")
local function note(s) fs.append_line(dir .. "/log", s) end
local function mark(name) fs.write_file_atomic(dir .. "/" .. name, "") end
flare.defer(function(reason) note("first:" .. reason) end)
flare.defer(function(reason) note("second:" .. reason) end, "second")
]]

local function run_flare(body)
  return proc.run{argv = {"/proc/self/exe", "run", write_script(prelude .. body), dir},
    timeout_s = 30}
end

local function log_lines()
  local t = {}
  for l in (fs.read_file(dir .. "/log") or ""):gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

local function wait_for(name)
  for _ = 1, 200 do
    if fs.exists(dir .. "/" .. name) then return true end
    flare.sleep(0.05)
  end
  error("timed out waiting for " .. name)
end

local function spawn_flare(body)
  return proc.spawn{argv = {"/proc/self/exe", "run", write_script(prelude .. body), dir}}
end

describe("cleanup in a flare process", function()
  before_each(function()
    dir = "/tmp/flare-cleanup-spec-" .. fs.getpid() .. "-" .. math.floor(flare.clock() * 1e6)
    fs.mkdir_p(dir)
  end)
  after_each(function() fs.remove(dir, {recursive = true}) end)

  it("runs last-in first-out at a normal end", function()
    local r = run_flare("note('body')")
    assert.equal(0, r.status, r.stderr)
    assert.same({"body", "second:exit", "first:exit"}, log_lines())
  end)

  it("runs after a script error, which still exits 1", function()
    local r = run_flare("error('script failed')")
    assert.equal(1, r.status)
    assert.matches("script failed", r.stderr)
    assert.same({"second:error", "first:error"}, log_lines())
  end)

  it("keeps going after a failing cleanup and exits 1", function()
    local r = run_flare("flare.defer(function() error('cleanup broke') end, 'broken')")
    assert.equal(1, r.status)
    assert.matches("cleanup 'broken' failed: .*cleanup broke", r.stderr)
    assert.same({"second:exit", "first:exit"}, log_lines())
  end)

  it("runs on SIGINT while the script sleeps, exiting 130", function()
    local c = spawn_flare("mark('ready'); flare.sleep(30); note('not reached')")
    wait_for("ready")
    c:kill("INT")
    local r = c:wait{timeout_s = 20}
    assert.equal(130, r.status, r.stderr)
    assert.same({"second:interrupt", "first:interrupt"}, log_lines())
  end)

  it("runs on SIGTERM while the script sleeps, exiting 143", function()
    local c = spawn_flare("mark('ready'); flare.sleep(30)")
    wait_for("ready")
    c:kill("TERM")
    local r = c:wait{timeout_s = 20}
    assert.equal(143, r.status, r.stderr)
    assert.same({"second:interrupt", "first:interrupt"}, log_lines())
  end)

  it("a second Ctrl-C interrupts only the running cleanup", function()
    local c = spawn_flare([[
flare.defer(function() mark('in-cleanup'); flare.sleep(30); note('slow finished') end, 'slow')
mark('ready'); flare.sleep(30)]])
    wait_for("ready")
    c:kill("INT")
    wait_for("in-cleanup")
    c:kill("INT")
    local r = c:wait{timeout_s = 20}
    assert.equal(130, r.status, r.stderr)
    assert.matches("cleanup 'slow' interrupted", r.stderr)
    assert.same({"second:interrupt", "first:interrupt"}, log_lines())
  end)
end)
