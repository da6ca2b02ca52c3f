-- scripts/deploy.lua creates deployments; scripts/cleanup.lua scales those with
-- a prefix to zero (or deletes them), with --dry-run changing nothing.
local e2e = require("e2e")

local env

describe("cleanup recipe", function()
  before_each(function() env = e2e.scratch() end)
  after_each(function() e2e.remove(env) end)

  it("leaves no deployment with replicas", function()
    for _, id in ipairs({"exp-a", "exp-b", "keep-c"}) do
      local r = e2e.run(env, "deploy.lua", {"--action=create", "--id=" .. id})
      assert.equal(0, r.status, r.stderr)
    end
    local r = e2e.run(env, "deploy.lua", {"--action=sample", "--id=exp-a", "--prompt=ab:", "--n=2"})
    assert.equal(0, r.status, r.stderr)
    assert.matches("%[2%]", r.stdout)
    local st = e2e.api_state(env)
    assert.equal(1, st.deployments["exp-a"].max)

    r = e2e.run(env, "cleanup.lua", {"--prefix=exp-", "--dry-run"})
    assert.equal(0, r.status, r.stderr)
    assert.matches("scale to zero 2 deployment", r.stdout)
    assert.equal(1, e2e.api_state(env).deployments["exp-b"].max, "a dry run changed something")

    r = e2e.run(env, "cleanup.lua", {"--prefix=exp-"})
    assert.equal(0, r.status, r.stderr)
    st = e2e.api_state(env)
    assert.equal(0, st.deployments["exp-a"].max)
    assert.equal(0, st.deployments["exp-b"].max)
    assert.equal(1, st.deployments["keep-c"].max)

    r = e2e.run(env, "cleanup.lua", {"--all"})
    assert.equal(0, r.status, r.stderr)
    for id, d in pairs(e2e.api_state(env).deployments) do assert.equal(0, d.max, id) end

    r = e2e.run(env, "cleanup.lua", {"--prefix=exp-", "--delete"})
    assert.equal(0, r.status, r.stderr)
    st = e2e.api_state(env)
    assert.is_nil(st.deployments["exp-a"])
    assert.is_nil(st.deployments["exp-b"])
    assert.not_nil(st.deployments["keep-c"])
  end)

  it("refuses to run without a prefix", function()
    local r = e2e.run(env, "cleanup.lua", {})
    assert.equal(1, r.status)
    assert.matches("%-%-prefix", r.stderr)
  end)
end)
