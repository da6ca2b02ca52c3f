-- --dry-run validates, prints the resolved config and the plan, and creates
-- nothing: no run directory, no deployment, no trainer job.
local e2e = require("e2e")
local fs = require("flare.fs")

local env

describe("--dry-run", function()
  before_each(function() env = e2e.scratch() end)
  after_each(function() e2e.remove(env) end)

  it("creates nothing for grpo, hotload and cleanup", function()
    for _, script in ipairs({"grpo.lua", "hotload.lua", "deploy.lua"}) do
      local r = e2e.run(env, script, {"--dry-run"})
      assert.equal(0, r.status, script .. ": " .. r.stderr)
      assert.matches("dry run", r.stdout)
      assert.matches("plan:", r.stdout)
    end
    local r = e2e.run(env, "grpo.lua", {"--dry-run", "--steps=3", "--task=addition"})
    assert.matches('"steps": 3', r.stdout)
    assert.matches('"task": "addition"', r.stdout)
    assert.falsy(fs.exists(env.runs), "a run directory was created")
    local st = e2e.api_state(env)
    assert.same({}, st.deployments)
    assert.same({}, st.trainer_jobs)
  end)

  it("reports config mistakes before doing anything", function()
    local r = e2e.run(env, "grpo.lua", {"--dry-run", "--step=3"})
    assert.equal(1, r.status)
    assert.matches("unknown option %-%-step %(did you mean %-%-steps%?%)", r.stderr)
    r = e2e.run(env, "grpo.lua", {"--group-size=many"})
    assert.equal(1, r.status)
    assert.matches("%-%-group%-size expects a number", r.stderr)
    assert.falsy(fs.exists(env.runs))
  end)
end)
