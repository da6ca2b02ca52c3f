-- scripts/multi_lora.lua: three LoRA adapters on one engine, the table of rewards, undeploy,
-- deactivate and reactivate, and nothing left behind on exit.
local e2e = require("e2e")

local env

describe("multi_lora recipe", function()
  before_each(function() env = e2e.scratch() end)
  after_each(function() e2e.remove(env) end)

  it("each adapter beats the base and the others on its task; two are restored after reactivation",
    function()
    -- The script checks the claims itself (exit status 1 and "claim fails" lines otherwise);
    -- the table is checked here as well.
    local r = e2e.run(env, "multi_lora.lua", {"--steps=400"})
    assert.equal(0, r.status, r.stdout .. r.stderr)
    local out = r.stdout
    assert.matches("reward%s+vowels%s+sort%s+addition", out)
    local rows = {}
    for _, row in ipairs({"base model", "vowels adapter", "sort adapter", "addition adapter"}) do
      local a, b, c = out:match(row .. "%s+([%d.]+)%s+([%d.]+)%s+([%d.]+)\n")
      assert.truthy(a, row)
      rows[#rows + 1] = {tonumber(a), tonumber(b), tonumber(c)}
    end
    for task = 1, 3 do
      for r2 = 1, 4 do
        if r2 ~= task + 1 then assert.is_true(rows[task + 1][task] > rows[r2][task]) end
      end
    end
    assert.matches("claims: ok", out)
    assert.is_nil(out:find("claim fails"))
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
    local left = after[2] .. "\n" .. after[3]  -- listed by name
    assert.matches("multi%-lora%-sort%-2%s+Deployed", left)
    assert.matches("multi%-lora%-addition%-3%s+Deployed", left)
    assert.is_nil(left:find("vowels"))
    for _, line in ipairs(section("engine deactivated:")) do assert.matches("Deactivated", line) end
    local back = section("engine back:")
    assert.equal(3, #back)
    for _, line in ipairs(back) do assert.matches("Deployed", line) end
    assert.matches("@ sort%-final", back[2] .. back[3])
    assert.matches("@ addition%-final", back[2] .. back[3])
    local st = e2e.api_state(env)
    assert.is_nil(st.deployments["multi-lora"])
    for _, state in pairs(st.trainer_jobs) do assert.equal("JOB_STATE_DELETED", state) end
  end)
end)
