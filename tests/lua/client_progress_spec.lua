-- Progress lines of long waits, quiet mode, and the key never reaching any output.
local fx = require("client_fixture")

local SCRIPT = [[
local quiet = arg[1] == "quiet"
local fw = flare.connect{backend = "emulator", provision_delay_s = 0.3, quiet = quiet}
io.stdout:write("KEY=", fw.api_key, "\n")
local mgr = fw.deployments
mgr:create_or_get{deployment_id = "progress", base_model = "accounts/local/models/tiny-gpt",
  min_replica_count = 1}
mgr:wait_for_ready("progress", {poll_interval_s = 0.05})
mgr:delete("progress", {poll_interval_s = 0.05})
-- Finally an error that carries a request, printed by the host.
flare.connect{api_key = "wrong_" .. fw.api_key:sub(1, 3),
  base_url = fw.base_url}:request{path = "/v1/x"}
]]

local function run(mode)
  local dir = os.tmpname()
  os.remove(dir)
  os.execute("mkdir -p " .. dir)
  local script = dir .. "/progress.lua"
  local f = io.open(script, "w")
  f:write(SCRIPT)
  f:close()
  local cmd = string.format("%s run %s %s 2>%s/err </dev/null", fx.flare_exe(), script, mode, dir)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  local e = io.open(dir .. "/err")
  local err = e:read("*a")
  e:close()
  os.execute("rm -rf " .. dir)
  return out, err
end

describe("progress lines", function()
  it("prints timestamped lines off a terminal and never the key", function()
    local out, err = run("loud")
    local key = out:match("KEY=(%S+)")
    assert.truthy(key and #key > 12, "the child printed its key on stdout")
    assert.matches("%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ deployment progress: CREATING", err)
    assert.truthy(err:find("deleting progress: deleted", 1, true))
    -- Each status is logged once: no line repeats the one before (READY may not come at all
    -- when the probe of a CREATING deployment answers first).
    local statuses = {}
    for status in err:gmatch("deployment progress: ([^\n]-) %([%d.]+s%)\n") do
      statuses[#statuses + 1] = status end
    assert.truthy(#statuses >= 2, "expected CREATING and the end of the wait: " .. err)
    for i = 2, #statuses do
      assert.truthy(statuses[i] ~= statuses[i - 1], "status logged twice: " .. err)
    end
    assert.falsy(err:find("\r", 1, true), "no live line when stderr is not a terminal")
    assert.falsy(err:find(key, 1, true), "the key leaked into stderr")
    assert.truthy(err:find("unauthenticated", 1, true) or err:find("401", 1, true))
  end)

  it("is silent with quiet = true", function()
    local out, err = run("quiet")
    assert.truthy(out:find("KEY=", 1, true))
    assert.falsy(err:find("deployment progress", 1, true))
    assert.falsy(err:find("deleting", 1, true))
  end)
end)
