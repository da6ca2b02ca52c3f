-- flare.release on the local emulator: a recipe run trains a candidate, registers the base
-- and the candidate with one call each (weights read from the deployment's bucket), evaluates
-- both on a frozen suite through real samplers, and gates the candidate against the base.
local release = require("flare.release")
local distill = require("flare.distill")
local fs = require("flare.fs")
local json = require("flare.json")
local helpers = require("release_helpers")

local BASE = "accounts/local/models/tiny-gpt"

describe("flare.release on the emulator", function()
  it("registers snapshots, evaluates them on a suite and gates the candidate", function()
    local dir = helpers.temp_dir()
    local reg = dir .. "/registry.sqlite"
    local run = flare.recipe{name = "release-e2e", config = {task = "addition", seed = 5,
      steps = 3},
      args = {"--runs-dir=" .. dir .. "/runs"}, progress = false}
    local fw = flare.connect{backend = "emulator", provision_delay_s = 0.05, quiet = true}
    local info = fw.deployments:create_or_get{deployment_id = "rel-e2e", base_model = BASE,
      min_replica_count = 1, max_replica_count = 1}
    info = fw.deployments:wait_for_ready(info.deployment_id, {poll_interval_s = 0.05,
      timeout_s = 60})
    local trainer = fw:trainer{base_model = BASE, learning_rate = 1e-2,
      hot_load_deployment_id = info.deployment_id}
    local syncer = flare.weight_syncer{policy_client = trainer, deploy_mgr = fw.deployments,
      deployment_id = info.deployment_id, base_model = BASE, quiet = true}
    local sampler = fw:sampler{deployment = info, concurrency = 16}
    local suite = release.suite{name = "e2e", tasks = {{task = "addition", seed = 77, n = 8},
      {task = "reverse", seed = 78, n = 8}}, sampling = {temperature = 0, max_tokens = 6},
      slices = {{name = "addition", task = "addition"}, {name = "reverse", task = "reverse"}}}

    local base_snap = syncer:save_and_hotload("base-0", "base")
    local base_results = suite:run{sampler = sampler, version = nil, out = run.dir .. "/base.json"}
    local v1 = release.register{family = "e2e", run = run, deployment = info, snapshot = base_snap,
      evals = suite:summary(base_results), registry = reg}
    assert.equal("e2e@v1", v1.id)
    assert.equal(BASE, v1.base_model)
    local bucket = info.hot_load_bucket_url:match("^file://(.*)$")
    assert.equal(fs.sha256_file(bucket:gsub("/*$", "") .. "/" .. base_snap .. "/model.safetensors"),
      v1.weights_sha256)
    assert.equal(5, v1.config.seed)
    assert.equal(run.meta.script_sha256, v1.config.script_sha256)
    assert.same({task = "addition", seed = 5}, v1.data)
    assert.equal(suite.id, v1.evals.suite_id)

    for step = 1, run.config.steps do
      local samples = {}
      for i, p in ipairs(flare.tasks.get("addition", {seed = step}):sample(8)) do
        samples[i] = distill.text_sample(p.prompt, tostring(p.answer))
      end
      trainer:forward_backward(distill.sft_datums(samples), "cross_entropy")
      trainer:optim_step{learning_rate = 1e-2}
    end
    local trained = syncer:save_and_hotload("trained-3", "base")
    local cand_results = suite:run{sampler = sampler, out = run.dir .. "/cand.json"}
    for _, item in ipairs(cand_results.items) do
      assert(item.correct == 0 or item.correct == 1)
      assert(item.tokens > 0 and item.latency_ms >= 0, json.encode(item))
    end
    local v2 = release.register{family = "e2e", run = run, deployment = info, snapshot = trained,
      parent = "e2e@v1", evals = suite:summary(cand_results), registry = reg}
    assert.equal("e2e@v2", v2.id)
    assert(v2.weights_sha256 ~= v1.weights_sha256, "training changed no weight")
    base_results.version, cand_results.version = v1.id, v2.id
    local report = release.gate{suite = suite, baseline = base_results, candidate = cand_results,
      out_dir = run.dir, registry = reg, gates = {max_tokens_per_request = 1000}}
    assert.equal(#suite.items, report.n)
    assert(fs.exists(run.dir .. "/gate.json") and fs.exists(run.dir .. "/gate.html"))
    assert.equal(report.passed, json.decode(fs.read_file(run.dir .. "/gate.json")).passed)
    -- a delta snapshot has no full weights in the bucket to hash
    local delta = syncer:save_and_hotload("delta-4")
    local ok, err = pcall(release.register, {family = "e2e", deployment = info,
      snapshot = delta, registry = reg})
    assert.is_false(ok)
    assert.matches("snapshot delta%-4%-%x+ is a delta; register a base snapshot", err.message)
    trainer:close()
    fw.deployments:delete(info.deployment_id)
    require("flare.release.store").close_all()
    fs.remove(dir, {recursive = true})
  end)
end)
