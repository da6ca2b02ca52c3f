-- The trainer client and WeightSyncer's base/delta chain against the emulator.
local fx = require("client_fixture")

describe("trainer client", function()
  local fw, info, trainer
  before_each(function()
    fw = fx.fw()
    if not trainer then
      info = fx.ready_deployment("train")
      trainer = fw:trainer{base_model = fx.BASE_MODEL, hot_load_deployment_id = info.deployment_id,
        poll_interval_s = 0.05}
    end
  end)

  it("trains: forward_backward lowers the loss after optim_step", function()
    local datum = {tokens = {10, 20, 30, 40}, target_tokens = {20, 30, 40, 50}}
    local first = trainer:forward_backward({datum}, "cross_entropy")
    assert.equal(1, #first.loss_fn_outputs)
    assert.equal(4, #first.loss_fn_outputs[1].logprobs)
    local step = trainer:optim_step{learning_rate = 1e-2}
    assert.equal(1, step.step)
    for _ = 1, 3 do
      trainer:forward_backward({datum})
      trainer:optim_step{learning_rate = 1e-2}
    end
    local later = trainer:forward({datum})
    assert.truthy(later.metrics.loss < first.metrics.loss)
  end)

  it("accepts the protocol's datum form and returns futures", function()
    local d = {model_input = {chunks = {{type = "encoded_text", tokens = {1, 2, 3}}}},
      loss_fn_inputs = {target_tokens = {2, 3, 4}, weights = {1, 1, 1}}}
    local f = trainer:forward_backward_async({d}, "cross_entropy")
    local out = f:wait()
    assert.truthy(f:done())
    assert.equal(3, #out.loss_fn_outputs[1].logprobs)
    local g = trainer:optim_step_async{}
    assert.truthy(g:wait().step >= 1)
  end)

  it("saves and loads trainer state", function()
    local saved = trainer:save_state("ckpt-a")
    trainer:forward_backward({{tokens = {1, 2}, target_tokens = {2, 3}}})
    local moved = trainer:optim_step{}
    local loaded = trainer:load_state("ckpt-a")
    assert.equal(saved.step, loaded.step)
    assert.truthy(moved.step > loaded.step)
    local ok, e = pcall(trainer.load_state, trainer, "never-saved")
    assert.falsy(ok)
    assert.equal("not_found", e.code)
  end)

  it("validates its arguments", function()
    assert.error_matches(function() fw:trainer{} end, "base_model")
    assert.error_matches(function() fw:trainer{base_model = fx.BASE_MODEL, learning_rat = 1} end,
      "did you mean 'learning_rate'")
    assert.error_matches(function() fw:trainer{base_model = fx.BASE_MODEL, learning_rate = -1} end,
      "learning_rate must be > 0")
    assert.error_matches(function() trainer:save_weights_for_sampler("x",
      {checkpoint_type = "full"}) end,
      "checkpoint_type")
    assert.error_matches(function() trainer:optim_step{lr = 1} end, "unknown option 'lr'")
    assert.error_matches(function() trainer:forward_backward({{tokens = {1}}}) end, "target_tokens")
  end)

  it("takes every built-in loss, a reference's logprobs and reports kl apart from the mismatch",
    function()
    local d = {tokens = {1, 2, 3, 4}, target_tokens = {2, 3, 4, 5}, weights = {0, 1, 1, 1}}
    -- A reference: a second job that never steps; forward gives its logprobs.
    local ref = fw:trainer{base_model = fx.BASE_MODEL, poll_interval_s = 0.05}
    local ref_lp = ref:forward({d}).loss_fn_outputs[1].logprobs
    ref:close()
    local lp = trainer:forward({d}).loss_fn_outputs[1].logprobs
    d.logprobs, d.advantages, d.ref_logprobs = lp, {0, 1, 1, 1}, ref_lp
    for _, loss in ipairs({"importance_sampling", "ppo", "grpo", "dr_grpo", "gspo", "cispo",
      "reinforce"}) do
      local out = trainer:forward({d}, loss, {kl_beta = 0.1, kl_estimator = "k2"})
      assert.truthy(type(out.metrics.loss) == "number", loss)
      assert.near(0, out.metrics.logprob_mismatch, 1e-6, loss)
      assert.truthy(type(out.metrics.kl) == "number", loss)
    end
    local moved = {}
    for i, x in ipairs(lp) do moved[i] = x - 0.5 end  -- logp - ref = 0.5 on each token
    d.ref_logprobs = moved
    local out = trainer:forward({d}, "reinforce", {kl_estimator = "k1"})
    assert.near(0.5, out.metrics.kl, 1e-3)
    local pair = trainer:forward({d, d}, "dpo", {dpo_beta = 0.5})
    assert.near(math.log(2), pair.metrics.loss, 1e-6)  -- equal sequences: z = 0
    assert.equal(0, pair.metrics.preference_accuracy)
  end)

  it("answers a bad loss or loss_fn_config with a 400 naming the field", function()
    local d = {tokens = {1, 2}, target_tokens = {2, 3}, logprobs = {-1, -1}, advantages = {1, 1}}
    local function fails(pattern, ...)
      local ok, e = pcall(trainer.forward, trainer, ...)
      assert.falsy(ok, pattern)
      assert.equal(400, e.status, e.message)
      assert.truthy(e.message:find(pattern, 1, true), e.message)
    end
    fails("loss_fn 'grpo2' is not supported (supported: cross_entropy,", {d}, "grpo2")
    fails("loss_fn_config.normalization' is 'mean', not one of", {d}, "grpo",
      {normalization = "mean"})
    fails("loss_fn_config.tis_cap: does not apply to cispo", {d}, "cispo", {tis_cap = 2})
    fails("loss_fn_config.normalization_tokens: must be > 0", {d}, "dr_grpo",
      {normalization = "constant"})
    fails("data[0].ref_logprobs: required by kl_beta > 0", {d}, "ppo", {kl_beta = 0.1})
    fails("data: dpo takes (chosen, rejected) pairs, got 1", {d}, "dpo")
    fails("loss_fn_config.kl_estimator' must be one of", {d}, "ppo", {kl_estimator = 3})
  end)

  it("attaches to an existing job and reports a failed creation", function()
    local again = fw:trainer{base_model = fx.BASE_MODEL, job_id = trainer.job_id,
      poll_interval_s = 0.05}
    assert.truthy(again.attached)
    local ok, e = pcall(fw.trainer, fw, {base_model = "accounts/local/models/no-such-model",
      poll_interval_s = 0.05})
    assert.falsy(ok)
    assert.equal("invalid_argument", e.code)
    assert.truthy(e.message:find("no-such-model", 1, true))
  end)
end)

describe("weight_syncer", function()
  local fw, info, trainer

  local function fresh()
    fw = fx.fw()
    info = fx.ready_deployment("sync")
    trainer = fw:trainer{base_model = fx.BASE_MODEL, hot_load_deployment_id = info.deployment_id,
      poll_interval_s = 0.05}
  end

  local function syncer(extra)
    local o = {policy_client = trainer, deploy_mgr = fw.deployments,
      deployment_id = info.deployment_id,
      base_model = fx.BASE_MODEL, poll_interval_s = 0.05, warmup_retry_interval_s = 0.05,
        quiet = true}
    for k, v in pairs(extra or {}) do o[k] = v end
    return flare.weight_syncer(o)
  end

  local function train_step()
    trainer:forward_backward({{tokens = {3, 4, 5}, target_tokens = {4, 5, 6}}})
    trainer:optim_step{learning_rate = 1e-3}
  end

  -- Records the hotload requests the syncer makes.
  local function recording(mgr)
    local calls = {}
    local proxy = setmetatable({}, {__index = function(_, k)
      local v = mgr[k]
      if type(v) ~= "function" then return v end
      return function(_, ...)
        if k == "hotload_and_wait" then calls[#calls + 1] = (...) end
        return v(mgr, ...)
      end
    end})
    return proxy, calls
  end

  -- The SDK's WeightSyncer pins each delta to the snapshot it hotloaded last (its test:
  -- step-2's previous_snapshot_identity is step-1), and the trainer makes it against that one.
  it("sends a base first, then each delta against the snapshot hotloaded before it", function()
    fresh()
    local mgr, calls = recording(fw.deployments)
    local sy = syncer{deploy_mgr = mgr}
    assert.matches("^%x%x%x%x%x%x%x%x$", sy.session_id)
    train_step()
    local s1 = sy:save_and_hotload("step-1")
    assert.equal("step-1-" .. sy.session_id, s1)
    train_step()
    local s2 = sy:save_and_hotload("step-2")
    train_step()
    local s3 = sy:save_and_hotload("step-3")
    assert.is_nil(calls[1].incremental_snapshot_metadata)
    assert.same({previous_snapshot_identity = s1, compression_format = "flare-delta-v1",
      checksum_format = "alder32"},
      calls[2].incremental_snapshot_metadata)
    assert.equal(s2, calls[3].incremental_snapshot_metadata.previous_snapshot_identity)
    assert.equal(s3, sy:check_deployment_state())
    assert.equal(s3, sy.base_identity)
    for _, k in ipairs({"save_time_s", "hotload_time_s", "warmup_time_s", "total_time_s"}) do
      assert.equal("number", type(sy.last_timing[k]))
    end
    assert.truthy(sy.last_timing.total_time_s >= sy.last_timing.hotload_time_s)
    -- The deployment serves what the trainer has: its samples name the snapshot.
    local s = fw:sampler{deployment = info}
    assert.equal(s3, s:sample{prompts = {"hi"}, max_tokens = 1}[1][1].snapshot_identity)
    -- reset_delta_chain: the next save is a base again.
    sy:reset_delta_chain()
    train_step()
    local s4 = sy:save_and_hotload("step-4")
    assert.is_nil(calls[4].incremental_snapshot_metadata)
    assert.equal(s4, sy.base_identity)
    assert.is_true(sy:wait_for_hotload_ready{poll_interval_s = 0.05})
    trainer:close()
  end)

  it("10 deltas in a row: each pinned to the one before, served as the trainer has it", function()
    fresh()
    local mgr, calls = recording(fw.deployments)
    local sy = syncer{deploy_mgr = mgr, warmup_after_hotload = false}
    local sampler = fw:sampler{deployment = info}
    local seq = {256, 104, 101, 108, 108, 111, 32, 119, 111}
    local inputs, targets = {unpack(seq, 1, #seq - 1)}, {unpack(seq, 2)}
    local previous = sy:save_and_hotload("step-0")
    for k = 1, 10 do
      trainer:forward_backward({{tokens = inputs, target_tokens = targets}})
      trainer:optim_step{learning_rate = 1e-2}
      local snap = sy:save_and_hotload("step-" .. k)
      local meta = calls[k + 1].incremental_snapshot_metadata
      assert.equal(previous, meta and meta.previous_snapshot_identity, "step " .. k)
      assert.equal(snap, sy.base_identity)
      local served = sampler:sample{prompts = {seq}, max_tokens = 1, echo = true, logprobs = true,
        temperature = 0}[1][1]
      assert.equal(snap, served.snapshot_identity)
      local fwd = trainer:forward({{tokens = inputs, target_tokens = targets}})
      local trained = fwd.loss_fn_outputs[1].logprobs
      -- With echo the served logprobs are the SDK's training-aligned list: entry i is the
      -- logprob of token i + 1, as the trainer's target i.
      assert.truthy(served.logprobs_echoed)
      for i, lp in ipairs(trained) do
        assert.truthy(math.abs(served.inference_logprobs[i] - lp) < 1e-4,
          string.format("step %d token %d: served %g, trainer %g", k, i,
            served.inference_logprobs[i], lp))
      end
      previous = snap
    end
    trainer:close()
  end)

  it("starts with a base when the deployment serves another session's snapshot", function()
    fresh()
    local first = syncer()
    first:save_and_hotload("a")
    local mgr, calls = recording(fw.deployments)
    local second = syncer{deploy_mgr = mgr, first_checkpoint_type = "delta"}
    assert.truthy(second.session_id ~= first.session_id)
    local snap = second:save_and_hotload("b")
    assert.is_nil(calls[1].incremental_snapshot_metadata)
    assert.equal(snap, second:check_deployment_state())
    trainer:close()
  end)

  it("saves every snapshot as a base when lora_rank > 0", function()
    fresh()
    local mgr, calls = recording(fw.deployments)
    local sy = syncer{deploy_mgr = mgr, lora_rank = 8, warmup_after_hotload = false}
    sy:save_and_hotload("l1")
    sy:save_and_hotload("l2")
    assert.is_nil(calls[1].incremental_snapshot_metadata)
    assert.is_nil(calls[2].incremental_snapshot_metadata)
    assert.equal(0, sy.last_timing.warmup_time_s)
    trainer:close()
  end)

  it("a LoRA trainer's adapters hotload without a delta chain and serve its logprobs", function()
    fresh()
    trainer:close()
    trainer = fw:trainer{base_model = fx.BASE_MODEL, hot_load_deployment_id = info.deployment_id,
      lora_rank = 4, lora_alpha = 16, poll_interval_s = 0.05}
    assert.equal(16, trainer:get().trainingConfig.loraAlpha)
    assert.is_nil(trainer:get().trainingConfig.trainUnembed)  -- the server's default: true
    local mgr, calls = recording(fw.deployments)
    local sy = syncer{deploy_mgr = mgr, lora_rank = 4}
    local probe = {tokens = {256, 104, 105, 32, 116, 104, 101, 114},
      target_tokens = {104, 105, 32, 116, 104, 101, 114, 101}}
    for i = 1, 2 do
      for _ = 1, 3 do
        trainer:forward_backward({probe})
        trainer:optim_step{learning_rate = 2e-2}
      end
      local snap = sy:save_and_hotload("lora-" .. i)
      assert.is_nil(calls[i].incremental_snapshot_metadata)
      local st = fw.deployments:hotload_check_status{deployment_id = info.deployment_id,
        base_model = fx.BASE_MODEL}
      assert.same({{identity = snap, status = "loaded"}}, st.replicas[1].loaded_adapters)
    end
    -- Sampler and trainer agree on the sampled tokens' logprobs with the adapter loaded.
    local s = fw:sampler{deployment = info}
    local c = s:sample{prompts = {"hi there"}, max_tokens = 6, logprobs = true, seed = 3}[1][1]
    local seq = {}
    for _, t in ipairs(c.prompt_tokens) do seq[#seq + 1] = t end
    for _, t in ipairs(c.tokens) do seq[#seq + 1] = t end
    local tokens, targets = {}, {}
    for k = 1, #seq - 1 do tokens[k], targets[k] = seq[k], seq[k + 1] end
    local out = trainer:forward({{tokens = tokens, target_tokens = targets}})
    local lp = out.loss_fn_outputs[1].logprobs
    for k, v in ipairs(c.logprobs) do
      assert.truthy(math.abs(v - lp[#c.prompt_tokens - 1 + k]) <= 1e-4)
    end
    local merged = trainer:save_weights_for_sampler("merged-" .. sy.session_id,
      {checkpoint_type = "merged_base"})
    assert.equal("merged_base", merged.checkpoint_type)
    assert.error_matches(function()
      fw:trainer{base_model = fx.BASE_MODEL, lora_rank = 4, lora_alpha = 0}
    end, "lora_alpha must be > 0")
    local heads_off = fw:trainer{base_model = fx.BASE_MODEL, lora_rank = 2, train_unembed = false,
      poll_interval_s = 0.05}
    assert.is_false(heads_off:get().trainingConfig.trainUnembed)
    heads_off:close()
    trainer:close()
  end)

  it("save_only saves without syncing; hotload reports failure as false", function()
    fresh()
    local mgr, calls = recording(fw.deployments)
    local sy = syncer{deploy_mgr = mgr}
    local before = sy:check_deployment_state()
    local snap = sy:save_only("only")
    assert.equal(before, sy:check_deployment_state())
    assert.is_true(sy:hotload(snap, "base"))
    assert.equal(snap, sy:check_deployment_state())
    -- The SDK's resume order: save_only, then hotload of what it saved, as a delta.
    train_step()
    local d = sy:save_only("only-2")
    assert.is_true(sy:hotload(d, "delta"))
    assert.equal(snap, calls[2].incremental_snapshot_metadata.previous_snapshot_identity)
    assert.is_false(sy:hotload("not-saved-" .. sy.session_id, "base"))
    assert.is_false(syncer():hotload("whatever", "delta"), "a delta needs a base first")
    trainer:close()
  end)

  it("saves a base when the trainer's previous snapshot is not the one served", function()
    fresh()
    local mgr, calls = recording(fw.deployments)
    local sy = syncer{deploy_mgr = mgr}
    local s1 = sy:save_and_hotload("s1")
    train_step()
    sy:save_only("never-hotloaded")
    train_step()
    local s2 = sy:save_and_hotload("s2")
    assert.is_nil(calls[2].incremental_snapshot_metadata,
      "the delta would be against never-hotloaded")
    assert.equal(s2, sy.base_identity)
    train_step()
    local s3 = sy:save_and_hotload("s3")
    assert.equal(s2, calls[3].incremental_snapshot_metadata.previous_snapshot_identity)
    assert.equal(s3, sy:check_deployment_state())
    assert.truthy(s1 ~= s2)
    trainer:close()
  end)

  it("save-only mode: no deploy_mgr or deployment_id, deltas chain on the saves", function()
    fresh()
    local kinds = {}
    local client = setmetatable({}, {__index = function(_, k)
      local v = trainer[k]
      if type(v) ~= "function" then return v end
      return function(_, ...)
        if k == "save_weights_for_sampler" then
          kinds[#kinds + 1] = select(2, ...).checkpoint_type
        end
        return v(trainer, ...)
      end
    end})
    local sy = flare.weight_syncer{policy_client = client, quiet = true}
    assert.equal(fx.BASE_MODEL, sy.base_model)
    local a = sy:save_and_hotload("a")
    assert.equal("a-" .. sy.session_id, a)
    train_step()
    sy:save_and_hotload("b")
    assert.same({"base", "delta"}, kinds)
    assert.is_false(sy:hotload(a, "base"))
    assert.is_nil(sy:check_deployment_state())
    trainer:close()
  end)

  it("save_only returns nil when a save fails; a failed warmup is not fatal (the SDK's)", function()
    fresh()
    local failing = setmetatable({save_weights_for_sampler = function()
      flare.error{code = "unavailable", message = "trainer went away", status = 503}
    end}, {__index = trainer})
    local sy = syncer{policy_client = failing}
    assert.is_nil(sy:save_only("lost"))
    assert.equal("unavailable", sy.last_error.code)
    local warmups = 0
    local mgr = setmetatable({warmup = function()
      warmups = warmups + 1
      flare.error{code = "warmup_failed", message = "no answer"}
    end}, {__index = fw.deployments})
    local sy2 = syncer{deploy_mgr = mgr}
    local snap = sy2:save_and_hotload("w")
    assert.equal(snap, sy2:check_deployment_state())
    assert.equal("warmup_failed", sy2.last_warmup_error.code)
    -- hotload warms up afterwards too.
    assert.is_true(sy2:hotload(snap, "base"))
    assert.equal(2, warmups)
    trainer:close()
  end)

  it("merged_base is saved and hotloaded as a full base and starts the chain", function()
    fresh()
    local mgr, calls = recording(fw.deployments)
    local sy = syncer{deploy_mgr = mgr}
    local m = sy:save_and_hotload("merged", "merged_base")
    assert.is_nil(calls[1].incremental_snapshot_metadata)
    train_step()
    sy:save_and_hotload("after")
    assert.equal(m, calls[2].incremental_snapshot_metadata.previous_snapshot_identity)
    assert.error_matches(function() sy:save_and_hotload("x", "full") end, "merged_base")
    trainer:close()
  end)

  it("uses arc_v2 against the cloud and validates its options", function()
    fresh()
    local cloud_like = setmetatable({fw = {backend = "cloud"}}, {__index = fw.deployments})
    local sy = flare.weight_syncer{policy_client = trainer, deploy_mgr = cloud_like,
      deployment_id = "x",
      base_model = fx.BASE_MODEL}
    assert.equal("arc_v2", sy.compression_format)
    assert.equal(5, sy.poll_interval_s)
    assert.equal(10, sy.warmup_retry_interval_s)
    local local_sy = flare.weight_syncer{policy_client = trainer, deploy_mgr = fw.deployments,
      deployment_id = "x"}
    assert.equal(fw:poll_interval("hotload"), local_sy.poll_interval_s)
    assert.equal(fw:poll_interval("warmup"), local_sy.warmup_retry_interval_s)
    assert.equal(600, sy.hotload_timeout)
    assert.equal("base", sy.first_checkpoint_type)
    assert.equal(true, sy.warmup_after_hotload)
    assert.equal(10, sy.warmup_max_retries)
    assert.equal(true, sy.reset_prompt_cache)
    assert.equal(0, sy.lora_rank)
    assert.error_matches(function() flare.weight_syncer{deploy_mgr = fw.deployments} end,
      "policy_client")
    assert.error_matches(function() syncer{first_checkpoint_type = "full"} end, "checkpoint_type")
    assert.error_matches(function() syncer{hotload_timout = 1} end,
      "did you mean 'hotload_timeout'")
    trainer:close()
  end)
end)
