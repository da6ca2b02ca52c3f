-- flare.openai: the sampler for OpenAI-compatible servers, against the emulator's
-- /inference/v1 over real loopback HTTP: same result shape and samples as the
-- Fireworks DeploymentSampler, chat prompts through the chat template, clear
-- errors for what such a server cannot do.
local fx = require("client_fixture")

local info, fw

local function setup()
  if not info then
    fw = fx.fw()
    info = fx.ready_deployment("openai")
  end
end

local function url() return fw.base_url:gsub("/+$", "") .. "/inference/v1" end

local function message_of(fn)
  local ok, err = pcall(fn)
  assert.is_false(ok)
  return type(err) == "table" and err or {message = tostring(err)}
end

describe("flare.openai sampler", function()
  before_each(setup)

  it("returns n completions per prompt in order, the Fireworks sampler's samples", function()
    local s = flare.openai.sampler{base_url = url(), api_key = fw.api_key,
      model = info.inference_model, concurrency = 4}
    local prompts = {"alpha", {5, 6, 7}, "gamma gamma"}
    local groups = s:sample{prompts = prompts, n = 3, max_tokens = 4, seed = 11, logprobs = true,
      top_logprobs = 2}
    local native = fw:sampler{deployment = info}:sample{prompts = prompts, n = 3, max_tokens = 4,
      seed = 11, logprobs = true}
    assert.equal(3, #groups)
    for i, g in ipairs(groups) do
      assert.equal(3, #g)
      for j, c in ipairs(g) do
        assert.equal("string", type(c.text))
        assert.same(native[i][j].tokens, c.tokens)
        assert.equal(native[i][j].text, c.text)
        assert.equal(native[i][j].finish_reason, c.finish_reason)
        assert.equal(#c.tokens, #c.logprobs)
        assert.equal(#c.tokens, #c.sampling_logprobs)
        assert.equal(#c.tokens, #c.top_logprobs)
        assert.equal(2, #c.top_logprobs[1])
        for k, lp in ipairs(c.logprobs) do
          assert.truthy(lp <= 0)
          assert.truthy(math.abs(lp - native[i][j].logprobs[k]) < 1e-5)
        end
      end
    end
    assert.same({5, 6, 7}, groups[2][1].prompt_tokens)
    assert.equal(9, s:stats().requests)
  end)

  it("is what fw:sampler{backend = \"openai\"} gives for the connection's own server", function()
    local s = fw:sampler{backend = "openai", model = info.inference_model}
    local a = s:sample{prompts = {"hello"}, n = 2, max_tokens = 5, seed = 3, logprobs = true}
    local b = fw:sampler{deployment = info}:sample{prompts = {"hello"}, n = 2, max_tokens = 5,
      seed = 3}
    assert.same(b[1][2].tokens, a[1][2].tokens)
    assert.truthy(tostring(s):find("/inference/v1", 1, true))
  end)

  it("samples chat messages through the server's chat template", function()
    local s = fw:sampler{backend = "openai", model = info.inference_model}
    local messages = {{role = "system", content = "be brief"}, {role = "user", content = "2+2="}}
    local chat = s:sample{prompts = {messages}, n = 2, max_tokens = 8, seed = 5, logprobs = true}
    local plain = s:sample{prompts = {flare.chat.format(messages)}, n = 2, max_tokens = 8, seed = 5,
      stop = {flare.chat.stop}, logprobs = true}
    for j = 1, 2 do
      assert.equal(plain[1][j].text, chat[1][j].text)
      assert.same(plain[1][j].tokens, chat[1][j].tokens)
    end
  end)

  it("raises naming the missing token ids when the server sends none", function()
    local s = fw:sampler{backend = "openai", model = info.inference_model}
    local c = s:sample{prompts = {"abc"}, max_tokens = 3, seed = 1}[1][1]
    assert.equal("string", type(c.text))
    local err = message_of(function() return c.tokens end)
    assert.truthy(err.message:find("has no token ids", 1, true), err.message)
    local raw = fw:sampler{backend = "openai", model = info.inference_model,
      extra_body = {raw_output = true}}
    local r = raw:sample{prompts = {"abc"}, max_tokens = 3, seed = 1}[1][1]
    assert.equal(3, #r.tokens)
    assert.same({97, 98, 99}, r.prompt_tokens)
  end)

  it("reports server errors with their status, or returns them per sample", function()
    local s = fw:sampler{backend = "openai", model = "accounts/local/deployments/missing",
      max_attempts = 1}
    local err = message_of(function() s:sample{prompts = {"a"}, max_tokens = 1} end)
    assert.equal(404, err.status)
    assert.truthy(err.message:find("HTTP 404", 1, true), err.message)
    local groups = s:sample{prompts = {"a", "b"}, max_tokens = 1, on_error = "return"}
    assert.equal(404, groups[2][1].error.status)
    local bad = fw:sampler{backend = "openai", model = info.inference_model}
    local e2 = message_of(function()
      bad:sample{prompts = {{{role = "robot", content = "x"}}}, max_tokens = 1}
    end)
    assert.equal(400, e2.status)
    assert.truthy(e2.message:find("messages[0].role", 1, true), e2.message)
  end)

  it("reads the legacy completions logprobs other servers answer with", function()
    -- vLLM's /v1/completions with logprobs = 1 and return_tokens_as_token_ids.
    local choice = flare.json.decode([[{"text": "hi", "logprobs": {
      "tokens": ["token_id:104", "token_id:105"], "token_logprobs": [-0.5, -1.25],
      "top_logprobs": [{"token_id:104": -0.5, "token_id:7": -2.0},
                       {"token_id:9": -0.75, "token_id:105": -1.25}],
      "text_offset": [0, 1]}}]])
    local lp = flare.openai._read_logprobs(choice)
    assert.same({-0.5, -1.25}, lp.logprobs)
    assert.same({104, 105}, lp.ids)
    assert.same({{token = "token_id:9", logprob = -0.75},
      {token = "token_id:105", logprob = -1.25}}, lp.top[2])
    -- Plain token strings (no ids): logprobs, but no token ids.
    local plain = flare.openai._read_logprobs(flare.json.decode(
      [[{"logprobs": {"tokens": ["h", "i"], "token_logprobs": [-1, -2]}}]]))
    assert.same({-1, -2}, plain.logprobs)
    assert.is_nil(plain.ids[1])
  end)

  it("refuses what an OpenAI-compatible server cannot do", function()
    local conn = flare.openai.connect{base_url = url(), api_key = fw.api_key}
    local e1 = message_of(function() conn.deployments:create_or_get{deployment_id = "x"} end)
    assert.equal("unsupported", e1.code)
    assert.truthy(e1.message:find("deployments:create_or_get is not available", 1, true))
    assert.equal("unsupported", message_of(function() conn:trainer{} end).code)
    local s = conn:sampler{model = info.inference_model}
    assert.equal("unsupported", message_of(function() s:hotload() end).code)
    local e3 = message_of(function() s:sample{prompts = {"a"}, echo = true} end)
    assert.truthy(e3.message:find("echo", 1, true))
    local e4 = message_of(function() fw:sampler{backend = "openai", deployment = info} end)
    assert.truthy(e4.message:find("inference_model", 1, true))
    local ids = {}
    for _, m in ipairs(conn:models()) do ids[m.id] = true end
    assert.truthy(ids[info.inference_model] or ids[info.name])
  end)
end)
