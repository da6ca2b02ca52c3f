-- flare.sandbox.require: one shared module inside a trusted script. The module runs in a
-- sandbox of its own (language-level checks, API checks while its functions run); the host
-- keeps its key, globals and files.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/shared/?.lua;" .. package.path

describe("flare.sandbox.require", function()
  local eval = flare.sandbox.require("team_eval", {allow_prefix = "team-a-"})

  it("runs the module's functions", function()
    assert.equal(2, eval.score({1, 2, 3}))
  end)

  it("refuses files outside the module's folder", function()
    local ok, err = eval.read_outside("/etc/passwd")
    assert.falsy(ok)
    assert.equal("sandbox_denied", err.code)
    assert.equal("files.read", err.capability)
  end)

  it("keeps the module's globals and string methods away from the host", function()
    local ok = eval.poison()
    assert.falsy(ok, "setfenv on the host's print")
    assert.equal("x=1", string.format("x=%d", 1))
    assert.equal("function", type(print))
    assert.equal("X", ("x"):upper())
  end)

  it("never gives the module the API key, also in a function it hands back", function()
    local fw = flare.connect{quiet = true}
    assert.truthy(fw.api_key, "the host reads its own key")
    local a, b, c = eval.key(fw)
    assert.falsy(a)
    assert.falsy(b)
    assert.falsy(c)
    assert.falsy(eval.later(fw)())
    assert.truthy(fw.api_key, "the host still reads its key")
  end)

  it("limits deletes to the granted prefix and names the rule", function()
    local fw = flare.connect{quiet = true}
    local ok, err = eval.delete(fw, "team-b-prod")
    assert.falsy(ok)
    assert.equal("sandbox_denied", err.code)
    assert.truthy(err.message:find("--allow-prefix", 1, true), err.message)
    -- The host itself is not limited.
    assert.equal(nil, fw.deployments:get("team-b-prod"))
  end)

  it("stops a call into the module at its time limit, compiled loops included", function()
    local spin = flare.sandbox.require("team_spin", {time_limit_s = 0.3})
    local t0 = flare.clock()
    local ok, err = pcall(spin.spin)
    assert.falsy(ok)
    assert.equal("sandbox_limit", err.code, tostring(err))
    assert.equal("limits.time", err.capability)
    assert.truthy(flare.clock() - t0 < 10)
    -- The host goes on: no interrupt left pending, the module still answers.
    flare.sleep(0.05)
    assert.equal("done", spin.quick())
  end)
end)
