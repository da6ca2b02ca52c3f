-- scripts/multi_lora.lua: three LoRA adapters on one engine, the table of rewards, undeploy,
-- deactivate and reactivate, and nothing left behind on exit.
local e2e = require("e2e")

local env

describe("multi_lora recipe", function()
  before_each(function() env = e2e.scratch() end)
  after_each(function() e2e.remove(env) end)

  it("serves three adapters on one engine and restores the two left after reactivation", function()
    -- The claims (each adapter best on its own task) are printed, not enforced: a LoRA adapter
    -- on the built-in models' projections alone barely moves their logits (tied unembedding).
    local r = e2e.run(env, "multi_lora.lua", {"--steps=3", "--eval-problems=4",
      "--check-claims=false"})
    assert.equal(0, r.status, r.stderr)
    local out = r.stdout
    assert.matches("reward%s+vowels%s+reverse%s+sort", out)
    for _, row in ipairs({"base model", "vowels adapter", "reverse adapter", "sort adapter"}) do
      assert.matches(row .. "%s+[%d.]+%s+[%d.]+%s+[%d.]+\n", out)
    end
    assert.matches("claims: ", out)
    local function section(title)
      local body = out:match(title .. "\n(.-)\n[%a]") or out:match(title .. "\n(.*)$")
      assert.truthy(body, title)
      local lines = {}
      for line in body:gmatch("[^\n]+") do lines[#lines + 1] = line end
      return lines
    end
    local after = section("after undeploying [%w%-]+:")
    assert.equal(3, #after)
    assert.matches("base model", after[1])
    assert.matches("multi%-lora%-reverse%-2%s+Deployed", after[2])
    assert.matches("multi%-lora%-sort%-3%s+Deployed", after[3])
    for _, line in ipairs(section("engine deactivated:")) do assert.matches("Deactivated", line) end
    local back = section("engine back:")
    assert.equal(3, #back)
    for _, line in ipairs(back) do assert.matches("Deployed", line) end
    assert.matches("@ reverse%-final", back[2])
    local st = e2e.api_state(env)
    assert.is_nil(st.deployments["multi-lora"])
    for _, state in pairs(st.trainer_jobs) do assert.equal("JOB_STATE_DELETED", state) end
  end)
end)
