local grpo = require("flare.grpo")

local function completion(prompt, tokens, lps, finish)
  return {text = "", prompt_tokens = prompt, tokens = tokens, logprobs = lps,
    sampling_logprobs = lps, finish_reason = finish or "stop"}
end

describe("grpo.advantages", function()
  it("centres on the group mean", function()
    assert.same({-0.5, 0.5, -0.5, 0.5}, grpo.advantages({0, 1, 0, 1}))
  end)

  it("divides by the group std when asked", function()
    local a = grpo.advantages({0, 1, 0, 1}, {normalize_std = true, eps = 0})
    assert.same({-1, 1, -1, 1}, a)
  end)

  it("rejects rewards that are not numbers", function()
    assert.error_matches(function() grpo.advantages({1, "x"}) end, "reward 2 is not a number")
    assert.error_matches(function() grpo.advantages({0 / 0}) end, "reward 1 is not a number")
  end)
end)

describe("grpo.datum", function()
  it("shifts targets by one and zeroes prompt positions", function()
    local d = grpo.datum(completion({256, 10, 11}, {20, 21, 257}, {-0.1, -0.2, -0.3}), 0.5)
    assert.same({256, 10, 11, 20, 21}, d.model_input.chunks[1].tokens)
    assert.equal("encoded_text", d.model_input.chunks[1].type)
    local f = d.loss_fn_inputs
    assert.same({10, 11, 20, 21, 257}, f.target_tokens)
    assert.same({0, 0, -0.1, -0.2, -0.3}, f.logprobs)
    assert.same({0, 0, 0.5, 0.5, 0.5}, f.advantages)
    assert.same({0, 0, 1, 1, 1}, f.weights)
  end)

  it("names the missing field", function()
    assert.error_matches(function() grpo.datum({tokens = {1}}, 1) end, "prompt_tokens")
    assert.error_matches(function() grpo.datum(completion({1}, {2, 3}, {-1}), 1) end,
      "one logprob per completion token")
  end)
end)

describe("grpo.build_datums", function()
  it("drops groups whose rewards are all equal and keeps the others", function()
    local g1 = {completion({1}, {5}, {-1}), completion({1}, {6}, {-2})}
    local g2 = {completion({2}, {7}, {-1}), completion({2}, {8}, {-1})}
    local datums, info = grpo.build_datums({g1, g2}, {{1, 0}, {1, 1}})
    assert.equal(2, #datums)
    assert.equal(1, info.kept_groups)
    assert.equal(1, info.dropped_groups)
    assert.same({0.5}, datums[1].loss_fn_inputs.advantages)
    assert.same({-0.5}, datums[2].loss_fn_inputs.advantages)
    assert.same({6}, datums[2].loss_fn_inputs.target_tokens)
  end)

  it("accepts groups given as {completions = ...}", function()
    local g = {completions = {completion({1}, {5}, {-1}), completion({1}, {6}, {-2})}}
    local datums = grpo.build_datums({g}, {{0, 1}})
    assert.equal(2, #datums)
  end)

  it("checks that rewards match the group", function()
    local g = {completion({1}, {5}, {-1}), completion({1}, {6}, {-2})}
    assert.error_matches(function() grpo.build_datums({g}, {{1}}) end, "rewards%[1%] must hold 2")
  end)
end)

describe("grpo.pass_at_k", function()
  it("matches the unbiased estimator", function()
    assert.equal(0, grpo.pass_at_k(10, 0, 1))
    assert.near(0.3, grpo.pass_at_k(10, 3, 1), 1e-12)
    -- 1 - C(7,2)/C(10,2) = 1 - 21/45
    assert.near(1 - 21 / 45, grpo.pass_at_k(10, 3, 2), 1e-12)
    assert.equal(1, grpo.pass_at_k(4, 2, 3))
    assert.error_matches(function() grpo.pass_at_k(2, 1, 3) end, "must not exceed n")
  end)
end)

describe("grpo.metrics", function()
  it("reports reward, pass@k, truncation and logprob mismatch", function()
    local g1 = {completion({1}, {5, 6}, {-1, -1}, "length"), completion({1}, {6}, {-2})}
    local g2 = {completion({2}, {7}, {-1}), completion({2}, {8}, {-1})}
    local datums = grpo.build_datums({g1, g2}, {{1, 0}, {0, 0}})
    local outputs = {{logprobs = {-1.5, -0.5}}, {logprobs = {-2}}}
    local m = grpo.metrics{groups = {g1, g2}, rewards = {{1, 0}, {0, 0}}, k = 1,
      datums = datums, outputs = outputs, sync_s = 1.5}
    assert.near(0.25, m.reward_mean, 1e-12)
    assert.near(math.sqrt(0.1875), m.reward_std, 1e-12)
    assert.near(0.25, m["pass@1"], 1e-12)
    assert.near(0.25, m.truncation_rate, 1e-12)
    -- sampler - trainer over completion positions: (-1 - -1.5) + (-1 - -0.5) + (-2 - -2) = 0
    assert.near(0, m.logprob_mismatch, 1e-12)
    assert.near(1 / 3, m.logprob_abs_diff, 1e-12)
    assert.equal(1.5, m.sync_s)
  end)
end)

describe("grpo.loss_setup", function()
  it("gives each loss its config and advantage normalisation", function()
    local cfg, adv = grpo.loss_setup("importance_sampling")
    assert.is_nil(cfg)
    assert.equal(false, adv.normalize_std)
    cfg, adv = grpo.loss_setup("grpo", {clip_high = 0.28, kl_beta = 0.1})
    assert.near(0.8, cfg.clip_low_threshold, 1e-12)
    assert.near(1.28, cfg.clip_high_threshold, 1e-12)
    assert.equal(0.1, cfg.kl_beta)
    assert.equal("k3", cfg.kl_estimator)
    assert.equal(true, adv.normalize_std)
    cfg, adv = grpo.loss_setup("dr_grpo", {max_tokens = 4, sequences = 16, tis_cap = 2})
    assert.equal("constant", cfg.normalization)
    assert.equal(64, cfg.normalization_tokens)
    assert.equal(2, cfg.tis_cap)
    assert.equal(false, adv.normalize_std)
    assert.error_matches(function() grpo.loss_setup("grpo2") end, "not one of importance_sampling")
  end)

  it("attaches a reference's logprobs to the datums", function()
    local g = {completion({1}, {5}, {-1}), completion({1}, {6}, {-2})}
    local datums = grpo.build_datums({g}, {{1, 0}})
    grpo.attach_ref_logprobs(datums, {{logprobs = {-3}}, {logprobs = {-4}}})
    assert.same({-3}, datums[1].loss_fn_inputs.ref_logprobs)
    assert.error_matches(function() grpo.attach_ref_logprobs(datums, {{logprobs = {-3}}}) end,
      "outputs%[2%]")
  end)

  it("folds the KL penalty into the advantages for a trainer without kl_beta", function()
    local g = {completion({1}, {5}, {-1}), completion({1}, {6}, {-2})}
    local datums = grpo.build_datums({g}, {{1, 0}})  -- advantages 0.5 and -0.5
    assert.error_matches(function() grpo.kl_into_advantages(datums, 0.1) end, "ref_logprobs")
    grpo.attach_ref_logprobs(datums, {{logprobs = {-3}}, {logprobs = {-1}}})
    local _, k1 = grpo.kl_into_advantages(datums, 0.1)
    -- k1 = sampler - ref: -1 - -3 = 2 and -2 - -1 = -1
    assert.near(0.5 - 0.2, datums[1].loss_fn_inputs.advantages[1], 1e-12)
    assert.near(-0.5 + 0.1, datums[2].loss_fn_inputs.advantages[1], 1e-12)
    assert.near(0.5, k1, 1e-12)
  end)
end)
