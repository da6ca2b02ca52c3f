-- scripts/grpo.lua with each policy loss and with a KL penalty to a reference model, on the
-- emulator: every loss lifts the vowels reward; with --kl-beta > 0 the policy's KL to the
-- reference stays below the run without the penalty.
local e2e = require("e2e")

local BASE = "accounts/local/models/tiny-gpt"

local function mean(xs, from, to)
  local s, n = 0, 0
  for i = math.max(1, from), math.min(#xs, to) do s, n = s + xs[i], n + 1 end
  return n > 0 and s / n or 0/0
end

-- Runs the recipe in a scratch dir; returns its metrics lines.
local function run(args)
  local env = e2e.scratch()
  local r = e2e.run(env, "grpo.lua", args)
  local ok, metrics = pcall(e2e.jsonl, (e2e.run_dir(env, "grpo") or "") .. "/metrics.jsonl")
  local st = r.status == 0 and e2e.api_state(env)
  e2e.remove(env)
  assert.equal(0, r.status, r.stderr)
  assert.truthy(ok, "no metrics")
  assert.same({}, st.trainer_jobs)  -- the policy's and the reference's jobs are closed
  return metrics
end

local function series(metrics, key)
  local xs = {}
  for _, m in ipairs(metrics) do if m[key] then xs[#xs + 1] = m[key] end end
  return xs
end

describe("grpo recipe losses", function()
  for _, loss in ipairs(flare.grpo.losses) do
    it(loss .. " lifts the vowels reward", function()
      local rewards = series(run{"--seed=0", "--loss=" .. loss}, "reward")
      assert.equal(40, #rewards)
      assert.truthy(mean(rewards, 1, 3) <= 0.3, "first steps: " .. mean(rewards, 1, 3))
      assert.truthy(mean(rewards, 36, 40) >= 0.7, "last steps: " .. mean(rewards, 36, 40))
    end)
  end

  it("--kl-beta keeps the policy's KL to the reference below the run without it", function()
    local free = run{"--seed=0", "--ref-model=" .. BASE}
    local held = run{"--seed=0", "--ref-model=" .. BASE, "--kl-beta=0.05"}
    local kl_free, kl_held = series(free, "kl"), series(held, "kl")
    assert.truthy(#kl_free >= 10 and #kl_held >= 10, #kl_free .. " and " .. #kl_held .. " kl")
    -- The first step trains from the reference itself: no KL yet.
    assert.near(0, kl_free[1], 1e-6)
    local a, b = mean(kl_free, 11, 40), mean(kl_held, 11, 40)
    print(string.format("mean kl after 10 training steps: %.3f without the penalty, " ..
      "%.3f with beta 0.05", a, b))
    assert.truthy(b < 0.5 * a, "kl " .. b .. " with the penalty, " .. a .. " without")
    -- Without the penalty the policy learns the task (the KL measures a real movement).
    assert.truthy(mean(series(free, "reward"), 36, 40) >= 0.7)
  end)
end)
