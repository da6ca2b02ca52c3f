-- Ctrl-C while samples are in flight cancels all of them and raises "interrupted".
local fx = require("client_fixture")

local SCRIPT = [[
local fw = flare.connect{backend = "emulator", provision_delay_s = 0.05, quiet = true}
local info = fw.deployments:create_or_get{deployment_id = "intr",
  base_model = "accounts/local/models/tiny-gpt",
  min_replica_count = 1}
fw.deployments:wait_for_ready("intr", {poll_interval_s = 0.05})
fw:set_faults("/inference/v1/completions:delay:delay_ms=2000")
local s = fw:sampler{deployment = info}
os.execute("(sleep 0.5; kill -INT $PPID) &")
local ok, e = pcall(s.sample, s, {prompts = {"a", "b", "c"}, n = 4, max_tokens = 1})
print(ok, type(e) == "table" and e.code or tostring(e), s:stats().in_flight, s:stats().requests)
]]

describe("interrupts", function()
  it("cancels every request in flight", function()
    local path = os.tmpname()
    local f = io.open(path, "w")
    f:write(SCRIPT)
    f:close()
    local p = io.popen(fx.flare_exe() .. " run " .. path .. " 2>&1")
    local out = p:read("*a")
    p:close()
    os.remove(path)
    assert.equal("false\tinterrupted\t0\t12\n", out)
  end)
end)
