-- One SIGINT or SIGTERM stops a real `flare run` process wherever it is: in a loop
-- LuaJIT compiled to machine code, in an interpreted loop (jit.off), in a C wait
-- (flare.sleep, an HTTP request that gets no answer). Each registered cleanup runs
-- exactly once and the exit status is 130 (SIGINT) or 143 (SIGTERM).
local proc = require("flare.proc")
local fs = require("flare.fs")

local dir

-- Each cleanup appends "<name>:<reason>" to the log file; "ready" is written just
-- before the code under test starts.
local prelude = [[
local dir = ...
local fs = require("flare.fs")
local function note(s) fs.append_line(dir .. "/log", s) end
local function mark(name) fs.write_file_atomic(dir .. "/" .. name, "") end
flare.defer(function(reason) note("first:" .. reason) end)
flare.defer(function(reason) note("second:" .. reason) end, "second")
]]

-- The loop is the only code that runs after jit.attach: "compiled" appears once
-- LuaJIT finished a trace of it, so the signal lands in machine code.
local compiled_loop = [[
assert(jit.status(), "the JIT is off")
jit.attach(function(what) if what == "stop" then mark("compiled") end end, "trace")
mark("ready")
local x = 0
while true do x = x + 1 end
]]

local interpreted_loop = [[
jit.off()
mark("ready")
local x = 0
while true do x = x + 1 end
]]

local sleep_wait = [[
mark("ready")
flare.sleep(60)
]]

-- A listening socket that never accepts: the request is connected and waits for
-- an answer that does not come.
local http_wait = [[
local ffi = require("ffi")
ffi.cdef[=[
int socket(int, int, int);
int listen(int, int);
int getsockname(int, void*, unsigned*);
unsigned short ntohs(unsigned short);
struct flare_sockaddr_in {
  unsigned short family; unsigned short port; unsigned addr; char zero[8];
};
]=]
local fd = ffi.C.socket(2, 1, 0)
assert(fd >= 0 and ffi.C.listen(fd, 16) == 0, "listen failed")
local sa = ffi.new("struct flare_sockaddr_in")
local len = ffi.new("unsigned[1]", ffi.sizeof(sa))
assert(ffi.C.getsockname(fd, sa, len) == 0)
mark("ready")
flare.http.request{url = "http://127.0.0.1:" .. ffi.C.ntohs(sa.port) .. "/never", timeout_s = 60}
]]

local function write_script(body)
  local path = dir .. "/script.lua"
  fs.write_file_atomic(path, prelude .. body .. "\nnote('not reached')\n")
  return path
end

local function log_lines()
  local t = {}
  for l in (fs.read_file(dir .. "/log") or ""):gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

local function wait_for(name)
  for _ = 1, 400 do
    if fs.exists(dir .. "/" .. name) then return true end
    flare.sleep(0.05)
  end
  error("timed out waiting for " .. name)
end

-- Starts `body`, waits until it runs the code under test (and, for a compiled loop,
-- until LuaJIT compiled it and it ran for a while), sends `signal`.
local function interrupt(body, signal, opts)
  local c = proc.spawn{argv = {"/proc/self/exe", "run", write_script(body), dir}}
  wait_for("ready")
  if opts and opts.compiled then wait_for("compiled") end
  flare.sleep(0.3)
  c:kill(signal)
  return c:wait{timeout_s = 30}
end

local cases = {
  {"a loop compiled to machine code", compiled_loop, {compiled = true}},
  {"an interpreted loop (jit.off)", interpreted_loop},
  {"flare.sleep", sleep_wait},
  {"an HTTP request waiting for its answer", http_wait},
}

describe("one signal stops a flare process", function()
  before_each(function()
    dir = "/tmp/flare-interrupt-spec-" .. fs.getpid() .. "-" .. math.floor(flare.clock() * 1e6)
    fs.mkdir_p(dir)
  end)
  after_each(function() fs.remove(dir, {recursive = true}) end)

  for _, case in ipairs(cases) do
    local what, body, opts = case[1], case[2], case[3]
    it("SIGINT in " .. what .. ": cleanups run once, exit 130", function()
      local r = interrupt(body, "INT", opts)
      assert.equal(130, r.status, r.stderr)
      assert.matches("flare: interrupted", r.stderr)
      assert.same({"second:interrupt", "first:interrupt"}, log_lines())
    end)

    it("SIGTERM in " .. what .. ": cleanups run once, exit 143", function()
      local r = interrupt(body, "TERM", opts)
      assert.equal(143, r.status, r.stderr)
      assert.matches("flare: terminated", r.stderr)
      assert.same({"second:interrupt", "first:interrupt"}, log_lines())
    end)
  end

  it("a second SIGINT stops a cleanup stuck in a compiled loop; the others still run", function()
    local c = proc.spawn{argv = {"/proc/self/exe", "run", write_script([[
flare.defer(function()
  jit.attach(function(what) if what == "stop" then mark("compiled") end end, "trace")
  mark("in-cleanup")
  local x = 0
  while true do x = x + 1 end
end, "spinning")
mark("ready")
flare.sleep(60)
]]), dir}}
    wait_for("ready")
    c:kill("INT")
    wait_for("in-cleanup")
    wait_for("compiled")
    c:kill("INT")
    local r = c:wait{timeout_s = 30}
    assert.equal(130, r.status, r.stderr)
    assert.matches("cleanup 'spinning' interrupted", r.stderr)
    assert.same({"second:interrupt", "first:interrupt"}, log_lines())
  end)

  it("SIGTERM ends a process whose cleanup never returns within the grace period", function()
    local c = proc.spawn{argv = {"/proc/self/exe", "run", write_script([[
flare.defer(function()
  mark("in-cleanup")
  while true do pcall(flare.sleep, 60) end
end, "stuck")
mark("ready")
flare.sleep(60)
]]), dir}}
    wait_for("ready")
    c:kill("TERM")
    -- (A child still running after 30 s would be killed by wait, with another status.)
    local r = c:wait{timeout_s = 30}
    assert.equal(143, r.status, r.stderr)
    assert.truthy(fs.exists(dir .. "/in-cleanup"), "the cleanups started")
  end)
end)

-- LuaJIT's hook check once made a pairs() loop that starts a trace spin forever
-- (tools/luajit/checkhook-itern.patch): hot pairs() loops must still finish.
describe("the LuaJIT flare links", function()
  it("finishes hot pairs() loops", function()
    local r = proc.run{argv = {"/proc/self/exe", "-e", [[
local function count(t) local n = 0 for _ in pairs(t) do n = n + 1 end return n end
local t, s = {a = 1, b = 2, c = 3, d = 4, e = 5}, 0
for _ = 1, 2000 do s = s + count(t) end
print(s)]]}, timeout_s = 30}
    assert.equal(0, r.status, r.stderr)
    assert.equal("10000\n", r.stdout)
  end)
end)
