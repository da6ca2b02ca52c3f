-- The flare program as a user meets it: exit statuses and one-line errors.
local exe = flare.executable

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function run(args, opts)
  opts = opts or {}
  local out = os.tmpname()
  local cmd = sh_quote(exe) .. " " .. args .. " >" .. out .. " 2>&1"
  if opts.stdin then cmd = "printf %s " .. sh_quote(opts.stdin) .. " | " .. cmd end
  local ok, _, code = os.execute(cmd)
  if type(ok) == "number" then code = ok / 256 end  -- Lua 5.1 semantics
  local f = io.open(out)
  local text = f:read("*a")
  f:close()
  os.remove(out)
  return code, text
end

local function tmpfile(text)
  local path = os.tmpname() .. ".lua"
  local f = io.open(path, "w")
  f:write(text)
  f:close()
  return path
end

describe("flare", function()
  it("runs a script with arg and ... as luajit sets them", function()
    local p = tmpfile("print(arg[0] ~= nil, arg[1], arg[2], select('#', ...), ...)")
    local code, out = run(sh_quote(p) .. " one two")
    assert.equal(0, code)
    assert.equal("true\tone\ttwo\t2\tone\ttwo\n", out)
    os.remove(p)
  end)

  it("exits 1 with the message and a traceback naming file:line on a script error", function()
    local p = tmpfile("local x = 1\nerror('boom')\n")
    local code, out = run("run " .. sh_quote(p))
    assert.equal(1, code)
    assert.matches("%.lua:2: boom", out)
    assert.matches("stack traceback", out)
    os.remove(p)
  end)

  it("names the file and line of a syntax error", function()
    local p = tmpfile("x = = 1\n")
    local code, out = run("run " .. sh_quote(p))
    assert.equal(1, code)
    assert.matches("%.lua:1:", out)
  end)

  it("names a missing script", function()
    local code, out = run("run /nonexistent/script.lua")
    assert.equal(1, code)
    assert.matches("cannot open /nonexistent/script.lua", out)
  end)

  it("exits 2 on an unknown subcommand or option", function()
    local code, out = run("frobnicate")
    assert.equal(2, code)
    assert.matches("unknown command 'frobnicate'", out)
    code, out = run("--frob")
    assert.equal(2, code)
    assert.matches("unknown option '%-%-frob'", out)
  end)

  it("rejects arguments that are not UTF-8 with the byte offset", function()
    local code, out = run("-e 'print(1)' " .. "ab\255")
    assert.equal(2, code)
    assert.matches("argument 3 is not valid UTF%-8 %(byte offset 2%)", out)
  end)

  it("runs -e chunks and piped standard input", function()
    local code, out = run("-e 'print(40 + 2)'")
    assert.equal(0, code)
    assert.equal("42\n", out)
    code, out = run("", {stdin = "print('from stdin')"})
    assert.equal(0, code)
    assert.equal("from stdin\n", out)
  end)

  it("prints versions and help", function()
    local code, out = run("version")
    assert.equal(0, code)
    assert.matches("^flare %d+%.%d+%.%d+\nLuaJIT 2%.1", out)
    assert.matches("libcurl", out)
    assert.matches("zstd", out)
    assert.matches("SQLite", out)
    code, out = run("--help")
    assert.equal(0, code)
    for _, sub in ipairs({"run", "test", "version"}) do
      assert.matches("\n  " .. sub .. " ", out)
    end
  end)

  it("reports a module that errors while loading", function()
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
    local f = io.open(dir .. "/bad_mod.lua", "w")
    f:write("error('cannot load me')\n")
    f:close()
    f = io.open(dir .. "/main.lua", "w")
    f:write("require('bad_mod')\n")
    f:close()
    local code, out = run("run " .. dir .. "/main.lua")
    assert.equal(1, code)
    assert.matches("bad_mod%.lua:1: cannot load me", out)
    os.execute("rm -rf " .. dir)
  end)

  it("exits 130 when interrupted during flare.sleep", function()
    local out = os.tmpname()
    -- Start flare in the background, interrupt it, and collect its status.
    local script = sh_quote(exe) .. " -e 'flare.sleep(30)' >" .. out .. " 2>&1 & pid=$!; " ..
      "sleep 0.3; kill -INT $pid; wait $pid; echo $? >>" .. out
    os.execute(script)
    local f = io.open(out)
    local text = f:read("*a")
    f:close()
    os.remove(out)
    assert.matches("flare: interrupted\n130\n$", text)
  end)
end)

describe("libraries opened on first use", function()
  local function loaded(code)
    local _, text = run("-e " .. sh_quote(code .. [[
      for line in io.lines("/proc/self/maps") do
        for _, lib in ipairs({"libcurl", "libflare-emulator", "libsqlite3", "libedit",
          "libisal"}) do
          if line:find(lib, 1, true) and not seen[lib] then seen[lib] = true; io.write(lib, " ") end
        end
      end]]))
    return text
  end

  it("maps no HTTP, emulator, line-editor or checksum library for a plain script", function()
    assert.equal("", loaded("seen = {}"))
  end)
  it("opens libcurl for the first HTTP request", function()
    local text = loaded("seen = {}; pcall(flare.http.request, {url = 'http://127.0.0.1:1/'})")
    assert.matches("libcurl", text)
    assert.equal(nil, text:find("emulator", 1, true))
  end)
  it("opens the emulator module when an emulator starts", function()
    local text = loaded("seen = {}; local em = flare.emulator.start{}")
    assert.matches("libflare%-emulator", text)
    assert.matches("libsqlite3", text)
  end)
  it("names the emulator module when it is missing", function()
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir .. " && cp " .. sh_quote(exe) .. " " .. dir .. "/flare")
    local out = os.tmpname()
    local ok, _, code = os.execute(dir .. "/flare -e 'flare.emulator.start{}' >" .. out .. " 2>&1")
    if type(ok) == "number" then code = ok / 256 end
    local text = io.open(out):read("*a")
    os.remove(out)
    os.execute("rm -rf " .. dir)
    assert.equal(1, code)
    assert.matches("local emulator needs a shared library that could not be loaded", text)
    assert.matches("libflare%-emulator%.so", text)
  end)
end)

describe("flare.wait_all", function()
  it("returns the results of several futures in order", function()
    local function future(v) return {wait = function() return v end} end
    assert.same({1, "two", 3}, flare.wait_all({future(1), future("two"), future(3)}))
  end)
  it("names a bad handle", function()
    assert.error_matches(function() flare.wait_all({42}) end, "handles%[1%] is a number")
  end)
end)
