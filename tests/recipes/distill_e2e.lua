-- scripts/distill.lua end to end: every accepted sample verifies, the shards
-- hold them, the student's pass rate improves, both deployments end at zero.
local e2e = require("e2e")
local fs = require("flare.fs")
local tasks = require("flare.tasks")

local env

describe("distill recipe", function()
  before_each(function() env = e2e.scratch() end)
  after_each(function() e2e.remove(env) end)

  it("keeps only verified samples and improves the student", function()
    local r = e2e.run(env, "distill.lua", {"--problems=16", "--teacher-steps=20",
      "--student-steps=20"})
    assert.equal(0, r.status, r.stderr)
    local dir = e2e.run_dir(env, "distill")
    local task = tasks.get("vowels")
    local samples = {}
    for _, name in ipairs(fs.list_dir(dir .. "/samples")) do
      if name:match("^samples%-") then
        for _, s in ipairs(e2e.jsonl(dir .. "/samples/" .. name)) do samples[#samples + 1] = s end
      end
    end
    assert.truthy(#samples > 0, "no accepted samples")
    for _, s in ipairs(samples) do
      assert.truthy(task:verify({prompt = s.prompt}, s.completion),
        "unverified sample " .. s.completion)
      assert.equal(257, s.tokens[#s.tokens], "a truncated sample was kept")
    end
    local before, after
    for _, m in ipairs(e2e.jsonl(dir .. "/metrics.jsonl")) do
      if m.phase == "filter" then assert.equal(#samples, m.accepted) end
      if m.phase == "eval" and m.when == "before" then before = m.correct_rate end
      if m.phase == "eval" and m.when == "after" then after = m.correct_rate end
    end
    assert.truthy(after > before + 0.3, string.format("student %.3f -> %.3f", before, after))
    local st = e2e.api_state(env)
    assert.equal(0, st.deployments["distill-teacher"].max)
    assert.equal(0, st.deployments["distill-student"].max)
    assert.same({}, st.trainer_jobs)
  end)
end)
