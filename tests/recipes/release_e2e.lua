-- scripts/release.lua end to end (short holds): the worse candidate is blocked by its vowels
-- slice gate, the good one reaches production through shadow and canary steps, the faulty
-- third candidate is rolled back by its error-rate alert with no failure on the production
-- path, the final rollback restores the first version, and `flare report` draws each
-- version's latency and error-rate curves from the run.
local e2e = require("e2e")
local json = require("flare.json")
local release = require("flare.release")

local env

describe("release recipe", function()
  before_each(function() env = e2e.scratch() end)
  after_each(function()
    require("flare.release.store").close_all()
    e2e.remove(env)
  end)

  it("gates, shadows, rolls out, contains a faulty canary and rolls back", function()
    local r = e2e.run(env, "release.lua", {"--hold_s=1", "--shadow_s=2", "--rate=30"}, 240)
    assert.equal(0, r.status, r.stdout .. r.stderr)
    assert.matches("gate PASSED: sortvowels@v2 vs sortvowels@v1", r.stdout)
    assert.matches("gate FAILED: sortvowels@v3 vs sortvowels@v1", r.stdout)
    assert.matches("FAIL slice:vowels +reward [%d.]+ %-> [%d.]+: diff %-", r.stdout)
    assert.matches("blocked: the gate report for sortvowels@v3 failed: [%w:, ]*slice:vowels",
      r.stdout)
    -- every request sent once the shadow is applied is mirrored and its answer logged
    local mirrored, requests = r.stdout:match("shadow sortvowels@v2: (%d+) mirrored answers " ..
      "of (%d+) requests")
    assert.equal(requests, mirrored)
    -- the rollback returns once the gateway serves the restored version alone
    local restored, after = r.stdout:match("after the rollback: (%d+) of (%d+) answers by " ..
      "sortvowels@v1")
    assert.equal(after, restored)
    assert.matches("sortvowels@v2 is production after", r.stdout)
    assert.matches("rollout of sortvowels@v4 stopped after [%d.]+s: error rate", r.stdout)
    assert.matches("fault drill: rollout exit 1; production sortvowels@v2 answered %d+, 0 failed",
      r.stdout)

    local dir = e2e.run_dir(env, "release")
    local reg = {registry = dir .. "/registry.sqlite"}
    assert.equal("sortvowels@v1", release.production("sortvowels", reg).id)
    assert.equal("dev", release.get("sortvowels@v3", reg).stage)
    local v4 = release.get("sortvowels@v4", reg)
    -- ended as a canary (staging), or under a heavy load only at 100% (rolled back, retired)
    assert(v4.stage == "staging" or v4.stage == "retired", v4.stage)
    assert.matches("automatic rollback: alert on rollout of sortvowels@v4: error rate",
      v4.history[#v4.history].reason)
    local v2 = release.get("sortvowels@v2", reg)
    assert.equal("retired", v2.stage)
    assert.matches("rolled back to sortvowels@v1: end of the demo", v2.history[#v2.history].reason)
    local gate = json.decode(require("flare.fs").read_file(dir .. "/gate-worse/gate.json"))
    assert.is_false(gate.passed)

    -- per-version curves in the run's metrics, drawn by flare report
    local names = {}
    for _, m in ipairs(e2e.jsonl(dir .. "/metrics.jsonl")) do
      for k in pairs(m) do names[k] = true end
    end
    for _, k in ipairs({"p50_ms/sortvowels@v1", "p50_ms/sortvowels@v2", "error_rate/sortvowels@v2",
      "error_rate/sortvowels@v4", "rollback_s"}) do
      assert(names[k], "metrics.jsonl has no " .. k)
    end
    local rep = flare.proc.run{argv = {e2e.flare_exe(), "report", "--term", dir}}
    assert.equal(0, rep.status, rep.stderr)
    assert.matches("error_rate/sortvowels@v4", rep.stdout, 1, true)
    local html = flare.proc.run{argv = {e2e.flare_exe(), "report", dir}}
    assert.equal(0, html.status, html.stderr)
    local page = require("flare.fs").read_file(html.stdout:match("wrote (%S+)"))
    assert.matches("p95_ms/sortvowels@v2", page, 1, true)
  end)
end)
