-- SIGINT (and SIGTERM) in the middle of scripts/grpo.lua: the cleanups still run,
-- so through the API afterwards the deployment has no replicas and the trainer
-- job is gone.
local e2e = require("e2e")

local env

local function interrupt_mid_run(signal, expected_status)
  local c = e2e.spawn(env, "grpo.lua", {"--steps=500"})
  e2e.wait_until("two logged steps", function()
    local dir = e2e.run_dir(env, "grpo")
    return dir and #e2e.jsonl(dir .. "/metrics.jsonl") >= 2
  end)
  c:kill(signal)
  local r = c:wait{timeout_s = 60}
  assert.equal(expected_status, r.status, r.stderr)
  local st = e2e.api_state(env)
  assert.not_nil(st.deployments["grpo-tiny"], "the deployment should still exist")
  assert.equal(0, st.deployments["grpo-tiny"].max, "replicas left running after " .. signal)
  assert.equal(0, st.deployments["grpo-tiny"].min)
  assert.same({}, st.trainer_jobs)
end

describe("grpo recipe interrupted", function()
  before_each(function() env = e2e.scratch() end)
  after_each(function() e2e.remove(env) end)

  it("scales the deployment to zero on SIGINT", function() interrupt_mid_run("INT", 130) end)
  it("scales the deployment to zero on SIGTERM", function() interrupt_mid_run("TERM", 143) end)
end)
