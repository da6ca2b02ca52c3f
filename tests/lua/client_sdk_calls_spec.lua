-- The Fireworks SDK's calls and defaults that flare keeps under the SDK's names, against the
-- emulator.
local fx = require("client_fixture")
local config = require("flare.fireworks.deployment_config")

local function catch(fn, ...)
  local ok, e = pcall(fn, ...)
  assert.falsy(ok, "expected an error")
  return e
end

-- A connection whose requests are recorded (method, path, body) before they are sent.
local function recording_fw(fw)
  local sent = {}
  local proxy = setmetatable({request = function(_, req)
    sent[#sent + 1] = req
    return fw:request(req)
  end}, {__index = fw})
  return proxy, sent
end

describe("SDK defaults", function()
  it("polls as the SDK against the cloud and briefly against the emulator", function()
    local cloud = flare.connect{backend = "cloud", api_key = fx.KEY,
      base_url = "http://127.0.0.1:9",
      account_id = "acct", quiet = true}
    -- deployment.py DEPLOYMENT_READY_POLL_S, DEPLOYMENT_DELETION_POLL_S, HOTLOAD_WAIT_POLL_S;
    -- _constants.py POLL_INTERVAL_S (trainer); warmup's retry_interval_s.
    assert.equal(15, cloud:poll_interval("deployment"))
    assert.equal(2, cloud:poll_interval("deletion"))
    assert.equal(5, cloud:poll_interval("hotload"))
    assert.equal(5, cloud:poll_interval("trainer"))
    assert.equal(10, cloud:poll_interval("warmup"))
    local fw = fx.fw()
    for _, kind in ipairs({"deployment", "deletion", "hotload", "trainer", "warmup"}) do
      assert.truthy(fw:poll_interval(kind) < 1, kind)
    end
    local tuned = flare.connect{backend = "cloud", api_key = fx.KEY,
      base_url = "http://127.0.0.1:9",
      account_id = "acct", quiet = true, poll_intervals = {hotload = 1}}
    assert.equal(1, tuned:poll_interval("hotload"))
    assert.equal(15, tuned:poll_interval("deployment"))
    assert.error_matches(function()
      flare.connect{backend = "cloud", api_key = fx.KEY, base_url = "http://127.0.0.1:9",
        account_id = "a",
        poll_intervals = {hotlaod = 1}}
    end, "poll_intervals.hotlaod")
    assert.error_matches(function() fw:poll_interval("nope") end, "unknown kind 'nope'")
  end)

  it("trainer learning_rate defaults to the SDK's TrainerJobConfig.learning_rate, 1e-5", function()
    local fw = fx.fw()
    local t = fw:trainer{base_model = fx.BASE_MODEL}
    assert.equal(1e-5, t.learning_rate)
    assert.equal(1e-5, t:get().trainingConfig.learningRate)
    t:close()
  end)

  it("sends reset_prompt_cache = false instead of dropping it", function()
    local fw = fx.fw()
    local info = fx.ready_deployment("rpc")
    local rfw, sent = recording_fw(fw)
    local mgr = require("flare.fireworks.deployments").new(rfw)
    local t = fw:trainer{base_model = fx.BASE_MODEL, hot_load_deployment_id = info.deployment_id}
    t:save_weights_for_sampler("rpc-a")
    assert.is_true(mgr:hotload_and_wait{deployment_id = info.deployment_id,
      base_model = fx.BASE_MODEL,
      snapshot_identity = "rpc-a", reset_prompt_cache = false})
    assert.equal(false, sent[1].body.reset_prompt_cache)
    t:save_weights_for_sampler("rpc-b")
    mgr:hotload{deployment_id = info.deployment_id, base_model = fx.BASE_MODEL,
      snapshot_identity = "rpc-b"}
    assert.equal(true, sent[#sent].body.reset_prompt_cache)
    t:close()
  end)

  it("hot_load_bucket_type = false leaves hotLoadBucketType unset (the SDK's None)", function()
    local cfg = config.validate{deployment_id = "b", base_model = fx.BASE_MODEL,
      hot_load_bucket_type = false}
    assert.is_nil(config.body(cfg, "acct").hotLoadBucketType)
    cfg = config.validate{deployment_id = "b", base_model = fx.BASE_MODEL}
    assert.equal("FW_HOSTED", config.body(cfg, "acct").hotLoadBucketType)
    local fw = fx.fw()
    local id = fx.unique("unset")
    fw.deployments:create_or_get{deployment_id = id, base_model = fx.BASE_MODEL,
      hot_load_bucket_type = false}
    assert.is_nil(fw:request{path = "/v1/accounts/local/deployments/" .. id}.body.hotLoadBucketType)
  end)
end)

describe("SDK calls", function()
  it("DeploymentConfig.from_training_profile pins deployment_shape to expected_deployment_shape",
    function()
    local mgr = fx.fw().deployments
    local shape = "accounts/fireworks/deploymentShapes/rft-tiny/versions/3"
    local cfg = mgr.DeploymentConfig.from_training_profile{deployment_id = "p",
      base_model = fx.BASE_MODEL,
      profile = {deployment_shape_version = shape}, max_replica_count = 2}
    assert.equal(shape, cfg.deployment_shape)
    assert.equal(shape, cfg.expected_deployment_shape)
    assert.equal(2, cfg.max_replica_count)
    assert.equal(shape, config.body(config.validate(cfg), "acct").deploymentShape)
    assert.equal(shape, config.from_training_profile{deployment_id = "p",
      base_model = fx.BASE_MODEL,
      profile = {deployment_shape = shape}}.deployment_shape)
    assert.error_matches(function()
      config.from_training_profile{deployment_id = "p", base_model = fx.BASE_MODEL, profile = {}}
    end, "does not include a deployment_shape_version")
    -- expected_deployment_shape is a guardrail: another shape is refused before any request.
    cfg.deployment_shape = "accounts/fireworks/deploymentShapes/inference-fast"
    local e = catch(mgr.create_or_get, mgr, cfg)
    assert.equal("invalid_argument", e.code)
    assert.truthy(e.message:find("expected '" .. shape .. "'", 1, true))
    assert.truthy(e.message:find("inference-fast", 1, true))
  end)

  it("wait_for_ready sets boot_time_s; last_hotload_error_message says why a hotload failed",
    function()
    local fw = fx.fw()
    local mgr = require("flare.fireworks.deployments").new(fw)
    assert.is_nil(mgr.boot_time_s)
    local id = fx.unique("boot")
    mgr:create_or_get{deployment_id = id, base_model = fx.BASE_MODEL, min_replica_count = 1}
    mgr:wait_for_ready(id)
    assert.equal("number", type(mgr.boot_time_s))
    assert.truthy(mgr.boot_time_s >= 0)
    local e = catch(mgr.hotload_and_wait, mgr, {deployment_id = id, base_model = fx.BASE_MODEL,
      snapshot_identity = "never-saved"})
    assert.equal("string", type(mgr.last_hotload_error_message))
    assert.truthy(mgr.last_hotload_error_message:find("never-saved", 1, true))
    assert.truthy(tostring(e):find("never-saved", 1, true))
    local t = fw:trainer{base_model = fx.BASE_MODEL, hot_load_deployment_id = id}
    t:save_weights_for_sampler("boot-a")
    assert.is_true(mgr:hotload_and_wait{deployment_id = id, base_model = fx.BASE_MODEL,
      snapshot_identity = "boot-a"})
    assert.is_nil(mgr.last_hotload_error_message)
    t:close()
  end)

  it("reattach_trainer moves a deployment to another trainer's bucket on a new replica", function()
    local fw = fx.fw()
    local mgr = fw.deployments
    local info = fx.ready_deployment("reat")
    local first = fw:trainer{base_model = fx.BASE_MODEL,
      hot_load_deployment_id = info.deployment_id}
    first:save_weights_for_sampler("first-a")
    mgr:hotload_and_wait{deployment_id = info.deployment_id, base_model = fx.BASE_MODEL,
      snapshot_identity = "first-a"}
    local second = fw:trainer{base_model = fx.BASE_MODEL}
    local updated = mgr:reattach_trainer(info.deployment_id, {base_model = fx.BASE_MODEL,
      trainer_job_name = second.name, timeout_s = 30})
    assert.equal(second.name, updated.hot_load_trainer_job)
    assert.equal(second:get().hotLoadBucketUrl, updated.hot_load_bucket_url)
    -- The fresh replica serves the base model until the new trainer's snapshot is hotloaded.
    local st = mgr:hotload_check_status{deployment_id = info.deployment_id,
      base_model = fx.BASE_MODEL}
    assert.equal(fx.BASE_MODEL, st.replicas[1].current_snapshot_identity)
    second:save_weights_for_sampler("second-a")
    assert.is_true(mgr:hotload_and_wait{deployment_id = info.deployment_id,
      base_model = fx.BASE_MODEL,
      snapshot_identity = "second-a"})
    -- Already attached: nothing to do.
    local again = mgr:reattach_trainer(updated, {base_model = fx.BASE_MODEL,
      trainer_job_name = second.job_id,
      timeout_s = 1})
    assert.equal(second.name, again.hot_load_trainer_job)
    assert.equal("second-a", mgr:hotload_check_status{deployment_id = info.deployment_id,
      base_model = fx.BASE_MODEL}.replicas[1].current_snapshot_identity)
    assert.error_matches(function() mgr:reattach_trainer(info.deployment_id,
      {base_model = fx.BASE_MODEL}) end,
      "trainer_job_name")
    assert.equal("not_found", catch(mgr.reattach_trainer, mgr, "no-such-dep",
      {base_model = fx.BASE_MODEL,
      trainer_job_name = second.name, timeout_s = 1}).code)
    first:close()
    second:close()
  end)

  it("list_checkpoints and resolve_checkpoint_path, with a cross-job resume", function()
    local fw = fx.fw()
    local a = fw:trainer{base_model = fx.BASE_MODEL}
    assert.same({}, a:list_checkpoints())
    a:forward_backward({{tokens = {1, 2, 3}, target_tokens = {2, 3, 4}}})
    a:optim_step{learning_rate = 1e-2}
    a:save_state("step-4")
    a:save_state("step-2")
    assert.same({"step-2", "step-4"}, a:list_checkpoints())
    assert.equal("step-4", a:resolve_checkpoint_path("step-4"))
    assert.equal("gs://bucket/x", a:resolve_checkpoint_path("gs://bucket/x", "other"))
    assert.equal("/abs/ckpt", a:resolve_checkpoint_path("/abs/ckpt", "other"))
    local ref = a:resolve_checkpoint_path("step-4", a.job_id)
    assert.equal("cross_job://" .. a.job_id .. "/step-4", ref)
    assert.equal(ref, a:resolve_checkpoint_path("step-4", a.name))
    local b = fw:trainer{base_model = fx.BASE_MODEL}
    assert.equal(1, b:load_state(ref).step)
    assert.same({}, b:list_checkpoints())
    assert.equal("not_found", catch(b.load_state, b, b:resolve_checkpoint_path("step-9",
      a.job_id)).code)
    assert.error_matches(function() a:resolve_checkpoint_path("") end, "non%-empty")
    a:close()
    b:close()
  end)
end)
