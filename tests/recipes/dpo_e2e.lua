-- scripts/dpo.lua end to end on the emulator: from the policy's own samples, DPO lifts the
-- task's correct rate and the held-out preference accuracy; --resume continues with the same
-- held-out pairs.
local e2e = require("e2e")

local env

local function mean(xs, from, to)
  local s, n = 0, 0
  for i = math.max(1, from), math.min(#xs, to) do s, n = s + xs[i], n + 1 end
  return n > 0 and s / n or 0/0
end

local function column(metrics, key)
  local xs = {}
  for _, m in ipairs(metrics) do xs[#xs + 1] = m[key] end
  return xs
end

describe("dpo recipe", function()
  before_each(function() env = e2e.scratch() end)
  after_each(function() e2e.remove(env) end)

  it("lifts the correct rate and the held-out preference accuracy", function()
    local r = e2e.run(env, "dpo.lua", {"--seed=0"})  -- the defaults: 30 steps
    assert.equal(0, r.status, r.stderr)
    assert.matches("correct [%d.]+ %-> [%d.]+", r.stdout)
    local metrics = e2e.jsonl(e2e.run_dir(env, "dpo") .. "/metrics.jsonl")
    assert.equal(30, #metrics)
    local correct, acc = column(metrics, "correct"), column(metrics, "heldout_accuracy")
    assert.truthy(mean(correct, 1, 5) <= 0.2, "first steps: " .. mean(correct, 1, 5))
    assert.truthy(mean(correct, 26, 30) >= 0.6, "last steps: " .. mean(correct, 26, 30))
    assert.truthy(acc[30] >= 0.6 and acc[30] > acc[1], "held-out accuracy " .. acc[1] .. " -> "
      .. acc[30])
    assert.same({}, e2e.api_state(env).trainer_jobs)  -- policy and reference closed
  end)

  it("resumes with the same held-out pairs", function()
    assert.equal(0, e2e.run(env, "dpo.lua", {"--steps=3"}).status)
    local dir = e2e.run_dir(env, "dpo")
    local saved = require("flare.fs").read_file(dir .. "/heldout_pairs.json")
    local r = e2e.run(env, "dpo.lua", {"--resume", "--steps=5"})
    assert.equal(0, r.status, r.stderr)
    assert.matches("resuming .* at step 4", r.stdout)
    assert.equal(5, #e2e.jsonl(dir .. "/metrics.jsonl"))
    assert.equal(saved, require("flare.fs").read_file(dir .. "/heldout_pairs.json"))
  end)
end)
