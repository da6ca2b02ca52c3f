-- scripts/distill_on_policy.lua end to end: from the same warm-started checkpoint the
-- on-policy student (per-token reverse KL against the teacher's logprobs) reaches the
-- teacher's correct rate in fewer steps than rejection-sampling SFT, and --resume skips the
-- phases already done.
local e2e = require("e2e")

local env

describe("on-policy distillation recipe", function()
  before_each(function() env = e2e.scratch() end)
  after_each(function() e2e.remove(env) end)

  it("reaches the teacher's correct rate in fewer student steps than rejection sampling",
    function()
    local r = e2e.run(env, "distill_on_policy.lua", {"--steps=20"})
    assert.equal(0, r.status, r.stderr)
    local on_policy = tonumber(r.stdout:match("on%-policy distillation reached it at step (%d+)"))
    local rejection = tonumber(r.stdout:match("rejection%-sampling SFT reached it at step (%d+)"))
    -- With the advantage's sign flipped (or no teacher signal) the on-policy student moves
    -- away from the teacher and does not reach its rate within the steps.
    assert.truthy(on_policy, "on-policy did not reach the teacher's rate:\n" .. r.stdout)
    assert.truthy(rejection == nil or on_policy < rejection, r.stdout)

    local dir = e2e.run_dir(env, "distill_on_policy")
    local teacher, kl_steps = nil, 0
    for _, m in ipairs(e2e.jsonl(dir .. "/metrics.jsonl")) do
      if m.phase == "teacher" then teacher = m.correct_rate end
      if m.phase == "on-policy" and m.reverse_kl then kl_steps = kl_steps + 1 end
    end
    assert.truthy(teacher >= 0.9, "the teacher is too weak to compare against: " .. teacher)
    assert.equal(on_policy, kl_steps, "one reverse_kl per on-policy step")

    r = e2e.run(env, "distill_on_policy.lua", {"--resume"})
    assert.equal(0, r.status, r.stderr)
    assert.matches("on%-policy distillation reached it at step " .. on_policy, r.stdout)
    assert.truthy(not r.stdout:find("phase=on%-policy"), "a finished phase ran again")
    local st = e2e.api_state(env)
    assert.equal(0, st.deployments["odist-on-policy"].max)
    assert.same({}, st.trainer_jobs)
  end)

  it("plans with --dry-run and creates nothing", function()
    local r = e2e.run(env, "distill_on_policy.lua", {"--dry-run"})
    assert.equal(0, r.status, r.stderr)
    assert.matches("plan:", r.stdout)
    assert.equal(nil, e2e.run_dir(env, "distill_on_policy"))
  end)
end)
