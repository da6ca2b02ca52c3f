-- forward_backward_custom and forward_custom with flare.losses: every built-in loss computed
-- in the client trains exactly as the trainer's own. Two trainers from the same base take the same
-- batches, one with forward_backward(loss_fn), the other with forward_backward_custom(
-- flare.losses.new(loss_fn)); their loss, metrics and gradient norm agree, and after each
-- Adam step (whose first steps move each weight by about the learning rate times the sign of
-- its gradient) they still give the same logprobs.
local fx = require("client_fixture")
local losses = require("flare.losses")

local function near(a, b, what)
  assert.truthy(math.abs(a - b) <= 1e-4 * math.max(1, math.abs(a), math.abs(b)),
    string.format("%s: %.9g against %.9g", what, a, b))
end

-- A batch of 4 datums of 6 tokens (the first is prompt, weight 0) whose sampler logprobs
-- sit off the trainer's by -0.4..0.4, so some ratios clip and some IS weights hit a cap.
local function batch(trainer, step)
  local datums = {}
  for i = 1, 4 do
    local tokens, targets = {}, {}
    for t = 1, 6 do
      tokens[t] = (step * 7 + i * 13 + t * 5) % 200 + 1
      targets[t] = (step * 3 + i * 11 + t * 17) % 200 + 1
    end
    datums[i] = {tokens = tokens, target_tokens = targets, weights = {0, 1, 1, 1, 1, 1}}
  end
  local lp = trainer:forward(datums).loss_fn_outputs
  for i, d in ipairs(datums) do
    d.logprobs, d.advantages, d.ref_logprobs = {}, {}, {}
    for t = 1, 6 do
      d.logprobs[t] = lp[i].logprobs[t] + 0.4 * math.sin(i * 6 + t + step)
      d.ref_logprobs[t] = lp[i].logprobs[t] - 0.3 * math.cos(i + t * step)
      d.advantages[t] = t == 1 and 0 or (i % 2 == 0 and 1 or -1) * (0.5 + 0.1 * i)
    end
  end
  return datums
end

local cases = {
  {"cross_entropy"},
  {"importance_sampling", {tis_cap = 1.2}},
  {"ppo", {clip_low = 0.1, clip_high = 0.28, kl_beta = 0.05, kl_estimator = "k3"}},
  {"grpo", {kl_beta = 0.1, kl_estimator = "k2"}},
  {"dr_grpo", {normalization = "constant", normalization_tokens = 16}},
  {"gspo", {clip_epsilon = 0.05, normalization = "sequence"}},
  {"cispo", {clip_high_threshold = 1.1, normalization = "token"}},
  {"reinforce", {kl_beta = 0.2, kl_estimator = "k1", tis_cap = 1.5}},
  {"dpo", {dpo_beta = 0.5}},
}

describe("forward_backward_custom", function()
  local fw, a, b
  before_each(function()
    fw = fx.fw()
    if not a then
      a = fw:trainer{base_model = fx.BASE_MODEL, poll_interval_s = 0.05}
      b = fw:trainer{base_model = fx.BASE_MODEL, poll_interval_s = 0.05}
    end
  end)

  it("trains as the trainer's own loss, for every built-in loss and option", function()
    for step, case in ipairs(cases) do
      local name, cfg = case[1], case[2]
      local datums = batch(a, step)
      local scored = a:forward_custom(datums, losses.new(name, cfg))  -- no gradient
      local built_in = a:forward_backward(datums, name, cfg)
      local custom = b:forward_backward_custom(datums, losses.new(name, cfg))
      for k, v in pairs(built_in.metrics) do
        for how, m in pairs({forward_backward_custom = custom, forward_custom = scored}) do
          assert.truthy(m.metrics[k], name .. ": " .. how .. " metric " .. k .. " missing")
          near(v, m.metrics[k], name .. " " .. how .. " " .. k)
        end
      end
      near(a:optim_step{learning_rate = 1e-2}.grad_norm,
        b:optim_step{learning_rate = 1e-2}.grad_norm, name .. " grad_norm")
      local la, lb = a:forward(datums).loss_fn_outputs, b:forward(datums).loss_fn_outputs
      for i = 1, #la do
        for t = 1, #la[i].logprobs do
          near(la[i].logprobs[t], lb[i].logprobs[t], name .. " logprob after the step")
        end
      end
    end
  end)

  it("tells a wrong-signed gradient apart, which the comparison above would catch",
    function()
    local datums = batch(a, 20)
    local right = losses.new("ppo")
    a:forward_backward_custom(datums, right)
    b:forward_backward_custom(datums, function(d, lp)
      local loss, grads = right(d, lp)
      for _, g in ipairs(grads) do for t = 1, #g do g[t] = -g[t] end end
      return loss, grads
    end)
    near(a:optim_step{learning_rate = 1e-2}.grad_norm,
      b:optim_step{learning_rate = 1e-2}.grad_norm, "grad_norm (sign-blind)")
    local la, lb = a:forward(datums).loss_fn_outputs, b:forward(datums).loss_fn_outputs
    local apart = 0
    for i = 1, #la do apart = math.max(apart, math.abs(la[i].logprobs[2] - lb[i].logprobs[2])) end
    assert.truthy(apart > 1e-3, "logprobs after opposite steps differ by " .. apart)
    -- Bring b back in step with a for the tests that follow.
    a:close()
    b:close()
    a, b = nil, nil
  end)

  it("takes a loss of the user's own: a weighted SFT lowers its loss", function()
    local d = {tokens = {5, 6, 7, 8}, target_tokens = {6, 7, 8, 9}}
    local function sft(_, lp)
      local loss, grads = 0, {}
      for i, l in ipairs(lp) do
        grads[i] = {}
        for t, x in ipairs(l) do
          loss, grads[i][t] = loss - 2 * x, -2
        end
      end
      return loss, grads, {custom = 1}
    end
    local first = a:forward_backward_custom({d}, sft)
    assert.equal(1, first.metrics.custom)
    assert.equal(4, #first.loss_fn_outputs[1].logprobs)
    for _ = 1, 3 do
      a:optim_step{learning_rate = 1e-2}
      a:forward_backward_custom({d}, sft)
    end
    assert.truthy(a:forward({d}).metrics.loss < first.metrics.loss / 2)
  end)

  it("refuses a bad loss function or config, naming what is wrong", function()
    local d = {tokens = {1, 2}, target_tokens = {2, 3}}
    assert.error_matches(function() a:forward_backward_custom({d}, "ppo") end,
      "loss_fn must be a function")
    assert.error_matches(function() a:forward_backward_custom({d}, function() return 0, {{1}} end)
    end, "grads%[1%] must hold 2 numbers")
    assert.error_matches(function()
      a:forward_backward_custom({d}, function() return 0, {{1, 0 / 0}} end)
    end, "grads%[1%]%[2%] is not a finite number")
    assert.error_matches(function() a:forward_backward_custom({d}, losses.new("ppo")) end,
      "datums%[1%]%.loss_fn_inputs%.advantages: ppo needs 2 values")
    assert.error_matches(function() losses.new("ppo2") end, "unknown loss_fn 'ppo2'")
    assert.error_matches(function() losses.new("cispo", {tis_cap = 2}) end,
      "loss_fn_config.tis_cap: does not apply to cispo")
    assert.error_matches(function() losses.new("ppo", {normalisation = "token"}) end,
      "unknown option 'normalisation'.*did you mean 'normalization'")
  end)
end)
