-- scripts/r1_pipeline.lua end to end on the emulator, shortened and on tiny-gpt: every stage
-- moves its metric the way a broken loss would not (SFT and RL raise the correct rate,
-- rejection sampling keeps only verified samples), the stage map is printed, the report files
-- metrics per stage, and --from-stage reruns the tail on the recorded outputs.
local e2e = require("e2e")
local fs = require("flare.fs")

local env
-- The smaller tiny-gpt takes larger steps: it learns the cold start in 40 steps at 3e-3 (at
-- tiny-gpt-m's 1e-3 it stays near 0), and its RL stages gain more at 4e-4 than at 2e-4.
local short = {"--seed=0", "--base-model=accounts/local/models/tiny-gpt", "--learning-rate=3e-3",
  "--rl-learning-rate=4e-4", "--cold-start-steps=40", "--rl-steps=25", "--final-rl-steps=25",
  "--rs-problems=192", "--sft-steps=80"}

local function args(extra)
  local out = {}
  for _, a in ipairs(short) do out[#out + 1] = a end
  for _, a in ipairs(extra or {}) do out[#out + 1] = a end
  return out
end

local function records(dir)
  local by = {}
  for _, r in ipairs(e2e.jsonl(dir .. "/stages.jsonl")) do by[r.stage] = r end
  return by
end

describe("r1 pipeline recipe", function()
  before_each(function() env = e2e.scratch() end)
  after_each(function() e2e.remove(env) end)

  it("moves each stage's metric, prints the stage map and reruns from a stage", function()
    local r = e2e.run(env, "r1_pipeline.lua", args())
    assert.equal(0, r.status, r.stderr)
    assert.matches("stage map:", r.stdout)
    local dir = e2e.run_dir(env, "r1")
    local s = records(dir)
    local stages = {"cold_start", "rl", "rejection", "fresh_sft", "final_rl"}
    for _, name in ipairs(stages) do
      assert.truthy(s[name], "no record of stage " .. name)
      assert.matches(name .. "%s+%S+%s+[%d.]+ %-> [%d.]+", r.stdout)
    end
    local function moved(name) return s[name].before .. " -> " .. s[name].after end
    local function rose(name, by)
      assert.truthy(s[name].after >= s[name].before + by, name .. " " .. moved(name))
    end
    -- Seed 0: cold start 0.018 -> 0.109, RL 0.109 -> 0.158, fresh SFT 0.018 -> 0.180, final RL
    -- 0.180 -> 0.242 (seeds 1 and 2: +0.09 / +0.06, +0.07 / +0.04, 0.22 / 0.17, +0.04 / +0.06).
    -- With the advantage's sign flipped RL falls (0.109 -> 0.003), and so does the final RL
    -- from the same fresh SFT model (0.180 -> 0.003).
    assert.truthy(s.cold_start.before <= 0.05, "cold start " .. moved("cold_start"))
    rose("cold_start", 0.05)  -- the base is near 0 on addition; SFT on the verified set lifts it
    rose("rl", 0.03)          -- RL with the verifier lifts it further
    -- Every survivor verifies, and the RL model's own samples did not all.
    assert.truthy(s.rejection.after == 1 and s.rejection.before < 1, "rejection " ..
      moved("rejection"))
    local survivors = e2e.jsonl(dir .. "/" .. s.rejection.outputs.data)
    assert.truthy(#survivors >= 40, "survivors: " .. #survivors)
    -- A fresh base starts near 0 and SFT on the survivors lifts it.
    assert.truthy(s.fresh_sft.before <= 0.05, "fresh sft " .. moved("fresh_sft"))
    rose("fresh_sft", 0.08)
    rose("final_rl", 0.03)    -- the final RL adds to what SFT gave

    -- Per-stage curves in the report.
    local run = require("flare.report").load(dir)
    assert.same(stages, run.stages)
    assert.truthy(run.series["rl/reward"] and #run.series["rl/reward"].values == 25)
    local general = run.series["fresh_sft/eval_loss"].values  -- held-out general data
    assert.truthy(#general == 2 and general[2] < general[1], "general eval_loss " ..
      table.concat(general, " -> "))
    local loss = run.series["cold_start/loss"].values
    assert.truthy(loss[1] > loss[#loss], "cold start loss " .. loss[1] .. " -> " .. loss[#loss])

    -- --from-stage reruns final_rl (shorter) on the recorded fresh_sft model; earlier stages
    -- are reused.
    local again = e2e.run(env, "r1_pipeline.lua", {"--from-stage=final_rl", "--final-rl-steps=5"})
    assert.equal(0, again.status, again.stderr)
    assert.matches("resuming " .. dir:gsub("%p", "%%%0"), again.stdout)
    assert.matches("stage 5/5: final_rl", again.stdout)
    assert.is_nil(again.stdout:find("stage 1/5", 1, true))
    assert.matches("fresh_sft .* recorded", again.stdout)
    local s2 = records(dir)
    assert.near(s.fresh_sft.after, s2.final_rl.before, 1e-9)  -- it starts where fresh_sft ended
    assert.truthy(fs.exists(dir .. "/metrics.superseded.jsonl"))
    local rl_rows = 0
    for _, m in ipairs(e2e.jsonl(dir .. "/metrics.jsonl")) do
      if m.stage == "final_rl" and m.step then rl_rows = rl_rows + 1 end
    end
    assert.equal(5, rl_rows)  -- the first attempt's 25 lines moved aside, not added to
    assert.same({}, e2e.api_state(env).trainer_jobs)  -- every stage's trainer closed
    local bad = e2e.run(env, "r1_pipeline.lua", {"--from-stage=rll", "--dry-run"})
    assert.truthy(bad.status ~= 0 and bad.stderr:find("no stage 'rll'", 1, true), bad.stderr)
  end)

  it("plans the stages on a dry run", function()
    local r = e2e.run(env, "r1_pipeline.lua", {"--dry-run"})
    assert.equal(0, r.status, r.stderr)
    assert.matches("1%. cold_start.*5%. final_rl", r.stdout)
  end)
end)
