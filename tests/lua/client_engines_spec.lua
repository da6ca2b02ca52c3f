-- fw.engines against the in-process emulator: an engine serving LoRA addons trained by a LoRA
-- trainer (imported from its snapshot, and uploaded as a PEFT folder), sampled by name, and the
-- lifecycle statuses through undeploy, deactivate and reactivate.
local fx = require("client_fixture")

describe("fw.engines", function()
  local fw, trainer, engine
  local probe = {tokens = {256, 104, 105, 32, 116, 104, 101, 114},
    target_tokens = {104, 105, 32, 116, 104, 101, 114, 101}}

  local function setup()
    if engine then return end
    fw = fx.fw()
    trainer = fw:trainer{base_model = fx.BASE_MODEL, lora_rank = 4, poll_interval_s = 0.05}
    for _ = 1, 3 do
      trainer:forward_backward({probe})
      trainer:optim_step{learning_rate = 5e-2}
    end
    trainer:save_weights_for_sampler("step-3")
    engine = fw.engines:create({deployment_id = fx.unique("eng"), base_model = fx.BASE_MODEL,
      min_replica_count = 1, inactive_timeout_s = 600}, {poll_interval_s = 0.05})
  end
  before_each(setup)

  -- The prompt's logprobs as served.
  local function greedy(s)
    return s:sample{prompts = {"hi there"}, max_tokens = 0, echo = true, logprobs = true,
      temperature = 0}[1][1].logprobs
  end
  local function differ(x, y)
    assert.equal(#x, #y)
    for i = 1, #x do if x[i] ~= y[i] then return true end end
    return false
  end

  it("deploys a trainer snapshot and a PEFT folder and samples each by name", function()
    local raw = fw:request{path = "/v1/accounts/local/deployments/" .. engine.deployment_id}.body
    assert.equal(true, raw.enableAddons)
    assert.equal("600s", raw.autoscalingPolicy.scaleToZeroWindow)
    local a = fw.engines:deploy{engine = engine, name = fx.unique("from-job"),
      source = {trainer = trainer, snapshot = "step-3"}, poll_interval_s = 0.02}
    assert.equal("Deployed", a.status)
    assert.equal(trainer.job_id .. " @ step-3", a.source)
    local bucket = trainer:get().hotLoadBucketUrl:gsub("^file://", "")
    local b = fw.engines:deploy{engine = engine.deployment_id, name = fx.unique("from-folder"),
      source = bucket .. "step-3", poll_interval_s = 0.02}
    assert.equal("uploaded", b.source)
    local list = fw.engines:list(engine)
    assert.equal(3, #list)
    assert.equal("base model", list[1].source)
    for _, d in ipairs(list) do
      assert.equal("Deployed", d.status)
      assert.truthy(d.created)
    end
    local base = greedy(fw:sampler{deployment = engine})
    local la = greedy(fw:sampler{deployment = engine, model = a.model:match("[^/]+$")})
    local lb = greedy(fw:sampler{deployment = engine, model = b.model:match("[^/]+$")})
    assert.truthy(#base > 0)
    assert.truthy(differ(base, la), "the addon moves the logprobs")
    assert.same(la, lb)
    -- The trainer computes the same logprobs the addon serves.
    local out = trainer:forward({probe})
    local c = fw:sampler{deployment = engine, model = a.model:match("[^/]+$")}:sample{
      prompts = {{256, 104, 105, 32, 116, 104, 101, 114, 101}}, max_tokens = 0, echo = true,
      logprobs = true, temperature = 0}[1][1]
    local served = c.logprobs
    assert.truthy(math.abs(served[#served] - out.loss_fn_outputs[1].logprobs[8]) <= 1e-3)

    fw.engines:undeploy(b)
    assert.is_nil(fw.engines:get(b))
    assert.equal(2, #fw.engines:list(engine))
    fw.engines:delete_model(b.model:match("[^/]+$"))

    fw.engines:deactivate(engine)
    assert.equal("Deactivated", fw.engines:get(a).status)
    fw.engines:reactivate(engine)
    assert.equal("Reactivating", fw.engines:get(a).status)
    local back = fw.engines:wait_for(engine, "Deployed", {poll_interval_s = 0.02})
    assert.equal(2, #back)
    assert.same(la, greedy(fw:sampler{deployment = engine, model = a.model:match("[^/]+$")}))
  end)

  it("refuses a base deployment, an engine of another base and bad names", function()
    local plain = fx.ready_deployment("plain")
    local e = select(2, pcall(fw.engines.deploy, fw.engines, {engine = plain, name = "x",
      source = {trainer = trainer, snapshot = "step-3"}}))
    assert.truthy(tostring(e.message):find("without enableAddons", 1, true))
    fw.deployments:delete(plain.deployment_id, {poll_interval_s = 0.05})
    e = select(2, pcall(fw.engines.deploy, fw.engines, {engine = engine, name = "Bad_Name",
      source = "/nowhere"}))
    assert.equal("invalid_argument", e.code)
    e = select(2, pcall(fw.engines.wait_for, fw.engines, engine, "Ready"))
    assert.truthy(tostring(e.message):find("must be one of Pending", 1, true))
    e = select(2, pcall(fw.engines.undeploy, fw.engines, {id = "base-" .. engine.deployment_id}))
    assert.truthy(tostring(e.message):find("cannot be removed on its own", 1, true))
    fw.engines:delete(engine)
    trainer:close()
  end)
end)
