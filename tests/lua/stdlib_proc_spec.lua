local proc = require("flare.proc")
local fs = require("flare.fs")

describe("flare.proc.run", function()
  it("captures stdout, stderr and the exit status", function()
    local r = proc.run{argv = {"sh", "-c", "echo out; echo err >&2; exit 3"}}
    assert.equal("out\n", r.stdout)
    assert.equal("err\n", r.stderr)
    assert.equal(3, r.status)
    assert.falsy(r.timed_out)
  end)

  it("leaves the parent's other open files out of the child", function()
    -- io.open's descriptor has no close-on-exec flag: the child must still not hold it
    local path = os.tmpname()
    local f = assert(io.open(path, "r"))
    local r = proc.run{argv = {"sh", "-c", 'for d in /proc/$$/fd/*; do readlink "$d" || :; done'}}
    f:close()
    os.remove(path)
    assert.equal(0, r.status, r.stderr)
    assert.is_nil(r.stdout:find(path, 1, true), r.stdout)
  end)

  it("passes argv without a shell", function()
    local r = proc.run{argv = {"printf", "%s|", "a b", "$HOME", ";ls"}}
    assert.equal("a b|$HOME|;ls|", r.stdout)
  end)

  it("feeds stdin, large inputs included", function()
    local big = string.rep("0123456789", 100000)
    local r = proc.run{argv = {"wc", "-c"}, stdin = big}
    assert.equal(#big, tonumber(r.stdout))
    r = proc.run{argv = {"cat"}, stdin = big}
    assert.equal(#big, #r.stdout)
  end)

  it("sets environment variables and the working directory", function()
    local r = proc.run{argv = {"sh", "-c", "echo $FLARE_X; pwd"},
      env = {FLARE_X = "yes"}, cwd = "/"}
    assert.equal("yes\n/\n", r.stdout)
    r = proc.run{argv = {"sh", "-c", "echo ${HOME:-none}"}, clear_env = true}
    assert.equal("none\n", r.stdout)
  end)

  it("kills the whole process group at the timeout", function()
    local marker = "/tmp/flare-proc-spec-" .. fs.getpid()
    fs.remove(marker)
    -- The grandchild would write the marker after 1.5 s if it survived the kill.
    local r = proc.run{argv = {"sh", "-c", "(sleep 1.5; touch " .. marker .. ") & sleep 30"},
      timeout_s = 0.3}
    assert.truthy(r.timed_out)
    assert.equal(9, r.signal)
    flare.sleep(1.8)
    assert.falsy(fs.exists(marker), "a grandchild survived the timeout")
  end)

  it("reports a signal death", function()
    local r = proc.run{argv = {"sh", "-c", "kill -TERM $$"}}
    assert.equal(15, r.signal)
    assert.equal(143, r.status)
  end)

  it("fails clearly for a missing program and bad options", function()
    assert.error_matches(function() proc.run{argv = {"flare-no-such-program"}} end,
      "cannot run 'flare%-no%-such%-program': No such file")
    assert.error_matches(function() proc.run{argv = {}} end, "option 'argv' must not be empty")
    assert.error_matches(function() proc.run{argv = {"true"}, timeout = 1} end,
      "unknown option 'timeout'")
    assert.error_matches(function() proc.run{argv = {"true"}, timeout_s = -1} end,
      "option 'timeout_s' must be >= 0, got %-1")
  end)
end)

describe("flare.proc.spawn", function()
  it("runs in the background, can be signalled and waited for", function()
    local c = proc.spawn{argv = {"sh", "-c",
      "trap 'echo got-term; exit 7' TERM; while :; do sleep 0.05; done"}}
    assert.truthy(c:pid() > 1)
    assert.truthy(c:running())
    flare.sleep(0.3)
    c:kill("TERM")
    local r = c:wait{timeout_s = 5}
    assert.equal(7, r.status)
    assert.equal("got-term\n", r.stdout)
    assert.error_matches(function() c:wait() end, "already waited")
  end)

  it("stops reporting running once the child has exited, keeping its output", function()
    local c = proc.spawn{argv = {"sh", "-c", "echo done; exit 3"}}
    local deadline = flare.clock() + 10
    while c:running() and flare.clock() < deadline do flare.sleep(0.02) end
    assert.falsy(c:running())
    local r = c:wait{timeout_s = 5}
    assert.equal(3, r.status)
    assert.equal("done\n", r.stdout)
  end)
end)
