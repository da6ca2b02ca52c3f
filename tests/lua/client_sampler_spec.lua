-- DeploymentSampler: order, shapes, options, per-item errors, and retries under
-- the emulator's fault injection with nothing lost or duplicated.
local fx = require("client_fixture")

local info, fw

local function setup()
  if not info then
    fw = fx.fw()
    info = fx.ready_deployment("sampler")
  end
end

local PROMPTS = {"alpha", {5, 6, 7}, "gamma gamma", {100}, "epsilon", {1, 2}, "eta", {42, 43}}

local function signature(groups)
  local out = {}
  for i, g in ipairs(groups) do
    for j, c in ipairs(g) do
      out[#out + 1] = i .. ":" .. j .. ":" .. table.concat(c.tokens, ",")
    end
  end
  return out
end

describe("DeploymentSampler", function()
  before_each(setup)
  after_each(function() if fw then fw:set_faults("") end end)

  it("returns n completions per prompt in input order", function()
    local s = fw:sampler{deployment = info, concurrency = 4}
    local groups = s:sample{prompts = PROMPTS, n = 3, max_tokens = 4, seed = 11, logprobs = true}
    assert.equal(#PROMPTS, #groups)
    for i, g in ipairs(groups) do
      assert.equal(3, #g)
      for _, c in ipairs(g) do
        assert.equal("string", type(c.text))
        assert.equal(4, #c.tokens)
        assert.equal(4, #c.logprobs)
        assert.equal(4, #c.sampling_logprobs)
        assert.equal("length", c.finish_reason)
        assert.equal("string", type(c.snapshot_identity))
        for _, lp in ipairs(c.logprobs) do assert.truthy(lp <= 0) end
      end
      if type(PROMPTS[i]) == "table" then assert.same(PROMPTS[i], g[1].prompt_tokens) end
    end
    assert.equal(5, #groups[1][1].prompt_tokens)  -- "alpha", one byte per token
    -- Each sample of one request stands alone: same prompt and seed, same tokens.
    local again = s:sample{prompts = {PROMPTS[1]}, n = 1, max_tokens = 4, seed = 11}
    assert.same(groups[1][1].tokens, again[1][1].tokens)
  end)

  it("gives sample j of a prompt seed + j - 1", function()
    local s = fw:sampler{deployment = info}
    local three = s:sample{prompts = {"seeded"}, n = 3, max_tokens = 6, seed = 100}
    local third = s:sample{prompts = {"seeded"}, n = 1, max_tokens = 6, seed = 102}
    assert.same(third[1][1].tokens, three[1][3].tokens)
  end)

  it("supports stop, echo, top_logprobs and max_tokens = 0 style options", function()
    local s = fw:sampler{model = info.inference_model}
    local g = s:sample{prompts = {"abc"}, max_tokens = 3, echo = true, logprobs = true,
      temperature = 0}
    local c = g[1][1]
    assert.equal(3, #c.tokens)
    assert.equal(3, #c.logprobs)
    assert.equal(3, #c.prompt_logprobs)
    assert.equal(0, c.prompt_logprobs[1])  -- the first prompt token has nothing to condition on
    local plain = s:sample{prompts = {"abc"}, max_tokens = 3, temperature = 0}
    assert.equal(plain[1][1].text, c.text)
    local top = s:sample{prompts = {"abc"}, max_tokens = 2, top_logprobs = 3}
    assert.equal(2, #top[1][1].top_logprobs)
    local n = 0
    for _ in pairs(top[1][1].top_logprobs[1]) do n = n + 1 end
    assert.equal(3, n)
  end)

  it("works with the future form and several batches at once", function()
    local s = fw:sampler{deployment = info, concurrency = 3}
    local f1 = s:submit{prompts = {"one", "two"}, n = 2, max_tokens = 2, seed = 1}
    local f2 = s:submit{prompts = {"three"}, n = 4, max_tokens = 2, seed = 2}
    local g2 = f2:wait()
    local g1 = f1:wait()
    assert.equal(2, #g1)
    assert.equal(4, #g2[1])
    assert.truthy(f1:done())
  end)

  it("validates options with their names", function()
    local s = fw:sampler{deployment = info}
    assert.error_matches(function() s:sample{prompts = {"x"}, max_token = 3} end,
      "did you mean 'max_tokens'")
    assert.error_matches(function() s:sample{prompts = {"x"}, n = 0} end, "n must be >= 1")
    assert.error_matches(function() s:sample{prompts = {"x"}, temperature = "hot"} end,
      "temperature.*number")
    assert.error_matches(function() s:sample{prompts = {{1, "a"}}} end, "prompts%[1%]%[2%]")
    assert.error_matches(function() s:sample{prompts = {true}} end, "prompts%[1%]")
    assert.error_matches(function() s:sample{} end, "prompts")
    assert.error_matches(function() fw:sampler{} end, "deployment = info or model")
    assert.error_matches(function() fw:sampler{deployment = info,
      concurrency = "lots"} end, "adaptive")
    assert.error_matches(function() fw:sampler{deployment = info, concurency = 3} end,
      "did you mean 'concurrency'")
  end)

  it("returns per-item errors or raises, as the caller chose", function()
    local s = fw:sampler{model = "accounts/local/deployments/does-not-exist",
      not_ready_attempts = 2,
      not_ready_interval_s = 0.01}
    local g = s:sample{prompts = {"a", "b"}, n = 2, max_tokens = 2, on_error = "return"}
    assert.equal(2, #g)
    for _, grp in ipairs(g) do
      for _, c in ipairs(grp) do
        assert.equal("not_found", c.error.code)
        assert.equal(404, c.error.status)
        assert.truthy(c.error.message:find("does-not-exist", 1, true))
        assert.truthy(c.error.message:find("gave up after 2 attempts", 1, true))
      end
    end
    local ok, e = pcall(s.sample, s, {prompts = {"a"}, max_tokens = 2})
    assert.falsy(ok)
    assert.equal("not_found", e.code)
    assert.falsy(tostring(e):find(fw.api_key, 1, true))
    -- A 400 is not retried.
    local bad = fw:sampler{deployment = info}
    local g2 = bad:sample{prompts = {{999999}}, max_tokens = 2, on_error = "return"}
    assert.equal("invalid_argument", g2[1][1].error.code)
    assert.equal(1, bad:stats().requests)
  end)

  -- libcurl itself resends a request whose reused connection died before any
  -- answer, so resets are not all visible as sampler retries.
  local function faulted(spec, every_fault_retried)
    local s = fw:sampler(fx.fast_retry{deployment = info, concurrency = 8, max_attempts = 12})
    local reference = signature(s:sample{prompts = PROMPTS, n = 4, max_tokens = 3, seed = 7})
    fw:set_faults(spec)
    local groups = s:sample{prompts = PROMPTS, n = 4, max_tokens = 3, seed = 7}
    local injected = fw:faults().rules[1].injected
    fw:set_faults("")
    assert.truthy(injected > 0, "the fault was injected")
    assert.same(reference, signature(groups))
    if every_fault_retried ~= false then assert.truthy(s:stats().retries >= injected) end
    return s
  end

  it("retries 429s and loses or duplicates nothing", function()
    faulted("/inference/v1/completions:429:rate=0.3:seed=3:retry_after=0")
  end)

  it("retries 503s", function()
    faulted("/inference/v1/completions:503:rate=0.3:seed=4:retry_after=0")
  end)

  it("retries reset connections", function()
    faulted("/inference/v1/completions:reset:rate=0.2:seed=5", false)
  end)

  it("retries truncated bodies", function()
    faulted("/inference/v1/completions:truncate:rate=0.3:seed=6")
  end)

  it("honours Retry-After", function()
    local s = fw:sampler(fx.fast_retry{deployment = info})
    fw:set_faults("/inference/v1/completions:429:count=1:retry_after=1")
    local t0 = flare.clock()
    local g = s:sample{prompts = {"wait"}, max_tokens = 1}
    assert.truthy(flare.clock() - t0 >= 0.95, "waited for Retry-After")
    assert.equal(1, #g[1][1].tokens)
    assert.equal(1, s:stats().rate_limited)
  end)

  it("rides out a deployment scaling up from zero", function()
    local mine = fx.ready_deployment("scale")
    fw.deployments:scale_to_zero(mine.deployment_id)
    fw.deployments:update(mine.deployment_id, {max_replica_count = 1})
    local s = fw:sampler(fx.fast_retry{deployment = mine})
    local g = s:sample{prompts = {"up"}, n = 2, max_tokens = 2}
    assert.equal(2, #g[1])
    assert.truthy(s:stats().retries >= 1)
  end)

  it("adapts its concurrency: halves on 429, grows on success", function()
    local s = fw:sampler(fx.fast_retry{deployment = info, concurrency = "adaptive",
      adaptive_initial = 16,
      max_attempts = 20})
    assert.equal(16, s:stats().limit)
    fw:set_faults("/inference/v1/completions:429:count=3:retry_after=0")
    s:sample{prompts = {"a"}, n = 1, max_tokens = 1}
    fw:set_faults("")
    local after_429 = s:stats().limit
    assert.truthy(after_429 < 16, "limit shrank, now " .. after_429)
    s:sample{prompts = PROMPTS, n = 4, max_tokens = 1}
    assert.truthy(s:stats().limit > after_429, "limit grew back")
  end)
end)
