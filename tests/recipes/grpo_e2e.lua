-- scripts/grpo.lua end to end on the emulator: the reward rises with a fixed
-- seed, the deployment is scaled to zero at the end, and --resume after a kill
-- continues at the step after the last checkpoint.
local e2e = require("e2e")
local fs = require("flare.fs")

local env

local function mean(xs, from, to)
  local s = 0
  for i = from, to do s = s + xs[i] end
  return s / (to - from + 1)
end

describe("grpo recipe", function()
  before_each(function() env = e2e.scratch() end)
  after_each(function() e2e.remove(env) end)

  it("lifts the vowels reward and scales the deployment to zero at the end", function()
    local r = e2e.run(env, "grpo.lua", {"--seed=0"})  -- the defaults: 40 steps
    assert.equal(0, r.status, r.stderr)
    assert.matches("reward [%d.]+ %-> [%d.]+", r.stdout)
    local metrics = e2e.jsonl(e2e.run_dir(env, "grpo") .. "/metrics.jsonl")
    assert.equal(40, #metrics)
    local rewards = {}
    for i, m in ipairs(metrics) do
      assert.equal(i, m.step)
      rewards[i] = m.reward
    end
    assert.truthy(mean(rewards, 1, 3) <= 0.3, "first steps: " .. mean(rewards, 1, 3))
    assert.truthy(mean(rewards, 36, 40) >= 0.8, "last steps: " .. mean(rewards, 36, 40))
    local st = e2e.api_state(env)
    assert.equal(0, st.deployments["grpo-tiny"].max, "replicas left running")
    assert.same({}, st.trainer_jobs)
  end)

  it("resumes after a kill at the step after the last checkpoint", function()
    local c = e2e.spawn(env, "grpo.lua", {"--steps=8"})
    local ckpt
    e2e.wait_until("two checkpoints", function()
      local dir = e2e.run_dir(env, "grpo")
      ckpt = dir and dir .. "/checkpoints.jsonl"
      return ckpt and #e2e.jsonl(ckpt) >= 2
    end)
    c:kill("KILL")
    c:wait{timeout_s = 30}
    local done = #e2e.jsonl(ckpt)
    assert.truthy(done < 8, "the run finished before the kill")
    local r = e2e.run(env, "grpo.lua", {"--resume"})
    assert.equal(0, r.status, r.stderr)
    assert.matches("resuming .* at step " .. (done + 1), r.stdout)
    local steps = {}
    for _, cp in ipairs(e2e.jsonl(ckpt)) do steps[#steps + 1] = cp.step end
    assert.same({1, 2, 3, 4, 5, 6, 7, 8}, steps)
    assert.equal(0, e2e.api_state(env).deployments["grpo-tiny"].max)
  end)

  it("runs the async mode", function()
    local r = e2e.run(env, "grpo.lua", {"--steps=4", "--async", "--group-size=4"})
    assert.equal(0, r.status, r.stderr)
    assert.equal(4, #e2e.jsonl(e2e.run_dir(env, "grpo") .. "/checkpoints.jsonl"))
    assert.truthy(fs.exists(e2e.run_dir(env, "grpo") .. "/config.json"))
  end)
end)
