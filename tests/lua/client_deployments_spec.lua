-- DeploymentManager against the in-process emulator over loopback HTTP.
local fx = require("client_fixture")

local function catch(fn, ...)
  local ok, e = pcall(fn, ...)
  assert.falsy(ok, "expected an error")
  return e
end

describe("DeploymentManager", function()
  local fw, mgr
  before_each(function()
    fw = fx.fw()
    mgr = fw.deployments
  end)

  it("creates, gets, lists and returns the existing deployment", function()
    local id = fx.unique("crud")
    assert.is_nil(mgr:get(id))
    local info = mgr:create_or_get{deployment_id = id, base_model = fx.BASE_MODEL}
    assert.equal(id, info.deployment_id)
    assert.equal("accounts/local/deployments/" .. id, info.name)
    assert.equal("accounts/local/deployments/" .. id, info.inference_model)
    assert.equal(0, info.min_replica_count)
    assert.equal(1, info.max_replica_count)
    assert.truthy(info.hot_load_bucket_url)
    local again = mgr:create_or_get{deployment_id = id, base_model = fx.BASE_MODEL}
    assert.equal(info.name, again.name)
    local seen = false
    for _, d in ipairs(mgr:list()) do seen = seen or d.deployment_id == id end
    assert.truthy(seen)
    local got = mgr:get(id)
    assert.equal(id, got.deployment_id)
    mgr:delete(id, {poll_interval_s = 0.05})
    assert.is_nil(mgr:get(id))
  end)

  it("sends the SDK's defaults and splits extra_args", function()
    local id = fx.unique("body")
    mgr:create_or_get{deployment_id = id, base_model = fx.BASE_MODEL, extra_args = {"--a 1", "--b"},
      region = "US_IOWA_1", annotations = {team = "rl"}}
    local raw = fw:request{path = "/v1/accounts/local/deployments/" .. id}.body
    assert.equal("Fireworks training deployment", raw.description)
    assert.equal("NVIDIA_H200_141GB", raw.acceleratorType)
    assert.equal("FW_HOSTED", raw.hotLoadBucketType)
    assert.equal(true, raw.enableHotLoad)
    assert.equal(false, raw.forTraining)
    assert.same({"--a", "1", "--b"}, raw.extraArgs)
    assert.equal("US_IOWA_1", raw.placement.region)
    assert.equal("rl", raw.annotations.team)
    local shaped = fx.unique("shape")
    mgr:create_or_get{deployment_id = shaped, base_model = fx.BASE_MODEL,
      deployment_shape = "accounts/x/deploymentShapes/s"}
    raw = fw:request{path = "/v1/accounts/local/deployments/" .. shaped}.body
    assert.is_nil(raw.acceleratorType)
    assert.equal("accounts/x/deploymentShapes/s", raw.deploymentShape)
  end)

  it("validates the config before any request", function()
    local base = {deployment_id = "v", base_model = fx.BASE_MODEL}
    local function with(k, v)
      local c = {}
      for a, b in pairs(base) do c[a] = b end
      c[k] = v
      return c
    end
    assert.error_matches(function() mgr:create_or_get(with("min_replica_count", -1)) end,
      "min_replica_count must be >= 0")
    assert.error_matches(function() mgr:create_or_get(with("max_replica_count", -2)) end,
      "max_replica_count must be >= 0")
    assert.error_matches(function()
      mgr:create_or_get{deployment_id = "v", base_model = fx.BASE_MODEL, min_replica_count = 3,
        max_replica_count = 1}
    end, "must not exceed")
    assert.error_matches(function() mgr:create_or_get(with("max_replicas", 1)) end,
      "did you mean 'max_replica_count'")
    assert.error_matches(function() mgr:create_or_get(with("enable_hot_load", "yes")) end,
      "enable_hot_load.*boolean")
    assert.error_matches(function() mgr:create_or_get(with("min_replica_count", 0.5))
      end, "integer")
    assert.error_matches(function()
      mgr:create_or_get{deployment_id = "v", base_model = fx.BASE_MODEL,
        accelerator_type = "NVIDIA_A100_80GB",
        deployment_shape = "s"}
    end, "either deployment_shape or accelerator_type")
    assert.error_matches(function() mgr:create_or_get{base_model = fx.BASE_MODEL} end,
      "deployment_id.*required")
    assert.error_matches(function() mgr:create_or_get{deployment_id = "v"} end,
      "base_model.*required")
    assert.error_matches(function() mgr:create_or_get(with("deployment_id", "Bad_Id")) end,
      "lowercase")
    assert.error_matches(function() mgr:create_or_get(with("extra_args", {1})) end,
      "extra_args%[1%]")
    assert.error_matches(function() mgr:create_or_get(base, {force_recreat = true}) end,
      "did you mean 'force_recreate'")
    assert.is_nil(mgr:get("v"), "nothing was created by a rejected config")
  end)

  it("waits until ready and recreates on force_recreate", function()
    local info = fx.ready_deployment("ready")
    assert.equal("READY", mgr:get(info.deployment_id).state)
    local fresh = mgr:create_or_get({deployment_id = info.deployment_id, base_model = fx.BASE_MODEL,
      min_replica_count = 1}, {force_recreate = true, quiet = true})
    assert.equal("CREATING", fresh.state)
    assert.equal(info.deployment_id, mgr:wait_for_ready(info.deployment_id,
      {poll_interval_s = 0.05}).deployment_id)
  end)

  it("recreates a deployment that is being deleted", function()
    local id = fx.unique("deleting")
    mgr:create_or_get{deployment_id = id, base_model = fx.BASE_MODEL}
    fw:request{method = "DELETE", path = "/v1/accounts/local/deployments/" .. id ..
      "?ignoreChecks=true&hard=true"}
    local found = mgr:get(id)  -- the emulator finishes the deletion quickly; it may be gone
    if found then assert.equal("DELETING", found.state) end
    local info = mgr:create_or_get({deployment_id = id, base_model = fx.BASE_MODEL}, {quiet = true})
    assert.equal("CREATING", info.state)
  end)

  it("raises structured errors for missing deployments", function()
    local e = catch(mgr.wait_for_ready, mgr, "no-such-dep", {poll_interval_s = 0.05})
    assert.equal("not_found", e.code)
    assert.equal(404, e.status)
    assert.truthy(e.message:find("accounts/local/deployments/no-such-dep", 1, true))
    assert.truthy(e.message:find("create_or_get", 1, true))
    e = catch(mgr.update, mgr, "no-such-dep", {max_replica_count = 2})
    assert.equal("not_found", e.code)
    assert.truthy(e.request_id)
    assert.error_matches(function() mgr:get(42) end, "deployment_id must be a non%-empty string")
  end)

  it("times out a wait with a clear error", function()
    local id = fx.unique("slow")
    mgr:create_or_get{deployment_id = id, base_model = fx.BASE_MODEL}
    fw:request{method = "DELETE", path = "/v1/accounts/local/deployments/" .. id ..
      "?ignoreChecks=true&hard=true"}
    local e = catch(mgr.wait_for_ready, mgr, id, {poll_interval_s = 0.05})
    assert.truthy(e.code == "deployment_failed" or e.code == "not_found")
  end)

  it("updates only masked fields and scales to zero", function()
    local info = fx.ready_deployment("upd")
    local id = info.deployment_id
    local u = mgr:update(id, {max_replica_count = 3, description = "changed"},
      {"max_replica_count"})
    assert.equal(3, u.max_replica_count)
    local raw = fw:request{path = "/v1/accounts/local/deployments/" .. id}.body
    assert.equal("Fireworks training deployment", raw.description)
    assert.error_matches(function() mgr:update(id, {max_replicas = 1}) end,
      "did you mean 'max_replica_count'")
    local z = mgr:scale_to_zero(id)
    assert.equal(0, z.min_replica_count)
    assert.equal(0, z.max_replica_count)
  end)

  it("hotloads a base snapshot and waits, and reports stale and current errors", function()
    local info = fx.ready_deployment("hot")
    local id = info.deployment_id
    local trainer = fw:trainer{base_model = fx.BASE_MODEL, hot_load_deployment_id = id,
      poll_interval_s = 0.05}
    trainer:save_weights_for_sampler("snap-a")
    assert.is_true(mgr:hotload_and_wait{deployment_id = id, base_model = fx.BASE_MODEL,
      snapshot_identity = "snap-a",
      poll_interval_s = 0.05})
    local st = mgr:hotload_check_status{deployment_id = id, base_model = fx.BASE_MODEL}
    assert.equal("snap-a", st.replicas[1].current_snapshot_identity)
    -- A snapshot that does not exist: the server rejects it and the error names it.
    local e = catch(mgr.hotload_and_wait, mgr, {deployment_id = id, base_model = fx.BASE_MODEL,
      snapshot_identity = "missing-snap", poll_interval_s = 0.05})
    assert.truthy(tostring(e):find("missing-snap", 1, true))
    -- The replica now carries an error stage for missing-snap: stale for the next target.
    trainer:save_weights_for_sampler("snap-b")
    assert.is_true(mgr:hotload_and_wait{deployment_id = id, base_model = fx.BASE_MODEL,
      snapshot_identity = "snap-b",
      poll_interval_s = 0.05})
    -- A delta against a base the replica does not have fails with the server's reason.
    e = catch(mgr.hotload_and_wait, mgr, {deployment_id = id, base_model = fx.BASE_MODEL,
      snapshot_identity = "snap-c",
      incremental_snapshot_metadata = {previous_snapshot_identity = "nope",
        compression_format = "flare-delta-v1",
      checksum_format = "alder32"}, poll_interval_s = 0.05})
    assert.equal("invalid_argument", e.code)
    assert.error_matches(function() mgr:hotload_and_wait{deployment_id = id,
      base_model = fx.BASE_MODEL} end,
      "snapshot_identity.*required")
    assert.error_matches(function()
      mgr:hotload_and_wait{deployment_id = id, base_model = fx.BASE_MODEL, snapshot_identity = "x",
        timeout = 3}
    end, "did you mean 'timeout_seconds'")
    trainer:close()
  end)

  it("warms up a deployment and fails clearly on a missing one", function()
    local info = fx.ready_deployment("warm")
    assert.is_true(mgr:warmup(info))
    local e = catch(mgr.warmup, mgr, "accounts/local/deployments/nothing-here",
      {max_retries = 2, retry_interval_s = 0.01})
    assert.equal("warmup_failed", e.code)
    assert.truthy(e.message:find("nothing-here", 1, true))
  end)

  it("deletes and waits for the deletion", function()
    local info = fx.ready_deployment("del")
    assert.is_true(mgr:delete(info.deployment_id, {poll_interval_s = 0.05}))
    assert.is_nil(mgr:get(info.deployment_id))
    assert.is_true(mgr:delete(info.deployment_id))
  end)
end)
