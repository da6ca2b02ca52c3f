-- scripts/hotload.lua: a delta between two checkpoints, hotloaded on top of
-- the first, serves exactly what the second serves; eval.lua reads pass@k.
local e2e = require("e2e")

local env

describe("hotload and eval recipes", function()
  before_each(function() env = e2e.scratch() end)
  after_each(function() e2e.remove(env) end)

  it("hotloads a delta that reproduces the new checkpoint", function()
    local r = e2e.run(env, "hotload.lua", {})
    assert.equal(0, r.status, r.stderr)
    assert.matches("ok: the delta reproduces the new checkpoint", r.stdout)
    assert.equal(0, e2e.api_state(env).deployments["hotload-demo"].max)
  end)

  it("evaluates a deployment and leaves it at zero replicas", function()
    local r = e2e.run(env, "grpo.lua", {"--steps=2", "--group-size=4"})
    assert.equal(0, r.status, r.stderr)
    r = e2e.run(env, "eval.lua", {"--problems=4", "--n=4", "--k=2"})
    assert.equal(0, r.status, r.stderr)
    assert.matches("pass@2=[%d.]+", r.stdout)
    assert.matches("samples=16", r.stdout)
    assert.equal(0, e2e.api_state(env).deployments["grpo-tiny"].max)
  end)
end)
