-- scripts/sft.lua end to end on examples/data/vowels.jsonl: the held-out accuracy and the
-- eval loss move as only a working cross-entropy moves them, the data file's sha256 is in
-- config.json, --resume continues after the last checkpoint, and the report has the curves.
local e2e = require("e2e")
local fs = require("flare.fs")
local json = require("flare.json")
local proc = require("flare.proc")

local env

describe("sft recipe", function()
  before_each(function() env = e2e.scratch() end)
  after_each(function() e2e.remove(env) end)

  it("learns the data set: eval loss falls, held-out accuracy rises, resumable", function()
    local data = e2e.root .. "/examples/data/vowels.jsonl"
    local r = e2e.run(env, "sft.lua", {"--data=" .. data, "--steps=30"})
    assert.equal(0, r.status, r.stderr)
    local dir = e2e.run_dir(env, "sft")
    local config = json.decode(fs.read_file(dir .. "/config.json"))
    assert.equal(data, config.data_files[1].path)
    assert.equal(fs.sha256_file(data), config.data_files[1].sha256)

    r = e2e.run(env, "sft.lua", {"--resume", "--steps=40"})
    assert.equal(0, r.status, r.stderr)
    assert.matches("resuming .* at step 31", r.stdout)
    local evals, steps = {}, {}
    for _, m in ipairs(e2e.jsonl(dir .. "/metrics.jsonl")) do
      if m.eval_loss then evals[#evals + 1] = m end
      if m.loss then steps[#steps + 1] = m.step end
    end
    assert.equal(40, #steps, "each step trained once across the two runs")
    local first, last = evals[1], evals[#evals]
    assert.equal(0, first.step)
    assert.equal(40, last.step)
    -- A loss with the wrong sign or no gradient leaves both where they started.
    assert.truthy(last.eval_loss > 0 and last.eval_loss < 0.4 * first.eval_loss,
      string.format("eval loss %.3f -> %.3f", first.eval_loss, last.eval_loss))
    assert.truthy(first.accuracy <= 0.2 and last.accuracy >= 0.8,
      string.format("accuracy %.3f -> %.3f", first.accuracy, last.accuracy))

    local rep = proc.run{argv = {e2e.flare_exe(), "report", dir}, timeout_s = 60}
    assert.equal(0, rep.status, rep.stderr)
    local html = fs.read_file(dir .. "/report.html")
    assert.truthy(html:find("eval_loss", 1, true) and html:find("accuracy", 1, true))
    assert.equal(0, e2e.api_state(env).deployments["sft-tiny"].max)
  end)

  it("plans with --dry-run and creates nothing", function()
    local r = e2e.run(env, "sft.lua",
      {"--dry-run", "--data=" .. e2e.root .. "/examples/data/vowels.jsonl"})
    assert.equal(0, r.status, r.stderr)
    assert.matches("plan:", r.stdout)
    assert.equal(nil, e2e.run_dir(env, "sft"))
  end)
end)
