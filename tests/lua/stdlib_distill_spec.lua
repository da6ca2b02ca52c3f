local distill = require("flare.distill")
local fs = require("flare.fs")

-- A sampler-like teacher that answers each prompt from a fixed script of
-- completions, in order, and counts what it was asked.
local function scripted_teacher(script)
  local t = {calls = 0, asked = {}}
  local pos = {}
  function t:sample(o)
    self.calls = self.calls + 1
    local groups = {}
    for i, prompt in ipairs(o.prompts) do
      self.asked[prompt] = (self.asked[prompt] or 0) + o.n
      local g = {}
      for j = 1, o.n do
        pos[prompt] = (pos[prompt] or 0) + 1
        local entry = script[prompt][pos[prompt]] or {"", "length"}
        local toks = {}
        for c in entry[1]:gmatch(".") do toks[#toks + 1] = c:byte() end
        g[j] = {text = entry[1], finish_reason = entry[2] or "stop", tokens = toks,
          prompt_tokens = {256}}
      end
      groups[i] = g
    end
    return groups
  end
  return t
end

local problems = {{id = "p1", prompt = "1+1=", answer = 2},
  {id = "p2", prompt = "2+2=", answer = 4}}
local function check(p, text) return tonumber(text) == p.answer end

describe("distill.rejection_sample", function()
  it("keeps verified, untruncated, unique samples and stops a prompt once enough are correct",
    function()
    local teacher = scripted_teacher{
      ["1+1="] = {{"3"}, {"2", "length"}, {"2"}, {"2"}, {"2"}, {"2"}},
      ["2+2="] = {{"5"}, {"5"}, {"5"}, {"5"}, {"5"}, {"5"}, {"5"}, {"5"}},
    }
    local r = distill.rejection_sample{sampler = teacher, problems = problems, verify = check,
      k = 6, batch = 2, want = 2}
    -- p1: round 1 gives "3" (wrong) and a truncated "2"; rounds 2 and 3 give "2"
    -- four times: one is kept, three are exact duplicates. p2 never verifies.
    assert.equal(1, #r.samples)
    assert.equal("2", r.samples[1].completion)
    assert.equal(6, teacher.asked["1+1="])
    assert.equal(6, teacher.asked["2+2="])
    local s = r.stats
    assert.equal(12, s.samples)
    assert.equal(1, s.accepted)
    assert.equal(1, s.truncated)
    assert.equal(7, s.rejected)
    assert.equal(3, s.duplicates)
    assert.equal(1, s.solved_prompts)
    assert.near(1 / 12, s.acceptance_rate, 1e-12)
    assert.equal(1, s.pass_rate_histogram["0.0-0.1"])
    assert.equal(1, s.pass_rate_histogram["0.8-0.9"])  -- 5 of 6 verify (the truncated one too)
  end)

  it("stops sampling a prompt as soon as `want` samples are accepted", function()
    local teacher = scripted_teacher{
      ["1+1="] = {{"2"}, {" 2"}, {"2 "}},
      ["2+2="] = {{"4"}, {"04"}, {"4.0"}},
    }
    local r = distill.rejection_sample{sampler = teacher, problems = problems, verify = check,
      k = 8, batch = 2, want = 1}
    assert.equal(1, teacher.calls)
    assert.equal(2, #r.samples)
  end)

  it("writes shards and resumes without resampling finished prompts", function()
    local dir = "/tmp/flare-distill-spec-" .. fs.getpid() .. "-" .. math.floor(flare.clock() * 1e6)
    local script = {["1+1="] = {{"2"}, {"1+1 is 2"}, {"2"}}, ["2+2="] = {{"4"}, {"4"}}}
    local r1 = distill.rejection_sample{sampler = scripted_teacher(script), problems = problems,
      verify = function(p, t) return tonumber(t:match("(%d+)$")) == p.answer end,
      k = 2, batch = 2, want = 2, out_dir = dir, shard_size = 2}
    assert.equal(3, #r1.samples)
    assert.same({"progress.jsonl", "samples-00000.jsonl", "samples-00001.jsonl"}, fs.list_dir(dir))
    local again = scripted_teacher(script)
    local r2 = distill.rejection_sample{sampler = again, problems = problems,
      verify = function() error("must not verify again") end, k = 2, batch = 2, want = 2,
        out_dir = dir}
    assert.equal(0, again.calls)
    assert.equal(3, #r2.samples)
    assert.equal(2, r2.stats.resumed_prompts)
    assert.same(r1.samples[3].completion, r2.samples[3].completion)
    fs.remove(dir, {recursive = true})
  end)

  it("names missing options", function()
    assert.error_matches(function() distill.rejection_sample{problems = {},
      verify = check} end, "sampler")
    assert.error_matches(function()
      distill.rejection_sample{sampler = scripted_teacher{}, problems = {{}}, verify = check}
    end, "problems%[1%]%.prompt")
  end)
end)

describe("distill dedupe", function()
  it("drops exact and 8-gram near duplicates", function()
    local d = distill.dedupe_filter{ngram = 8, overlap = 0.5}
    local a = "one two three four five six seven eight nine ten"
    assert.truthy(d:accept(a))
    assert.falsy(d:accept("  " .. a .. " "))
    assert.falsy(d:accept("one two three four five six seven eight nine ten eleven"))
    assert.truthy(d:accept("a completely different answer with many other words in it"))
    assert.truthy(d:accept("short"))
  end)
end)

describe("distill.sft_datum", function()
  it("puts the loss on completion tokens only", function()
    local d = distill.sft_datum{prompt_tokens = {256, 49, 43}, tokens = {50, 257}}
    assert.same({256, 49, 43, 50}, d.model_input.chunks[1].tokens)
    assert.same({49, 43, 50, 257}, d.loss_fn_inputs.target_tokens)
    assert.same({0, 0, 1, 1}, d.loss_fn_inputs.weights)
  end)

  it("makes byte-level samples from text, ending in EOS", function()
    local s = distill.text_sample("ab:", "e")
    assert.same({97, 98, 58}, s.prompt_tokens)
    assert.same({101, 257}, s.tokens)
    assert.same({0, 0, 1, 1}, distill.sft_datum(s).loss_fn_inputs.weights)
  end)

  it("formats stats with a histogram", function()
    local lines = distill.format_stats{prompts = 2, samples = 4, accepted = 1, truncated = 0,
      rejected = 3,
      duplicates = 0, acceptance_rate = 0.25, completion_tokens = 8, accepted_tokens = 2,
        solved_prompts = 1,
      pass_rate_histogram = {["0.0-0.1"] = 1, ["0.5-0.6"] = 1}}
    assert.matches("accepted 1 %(25%.0%%%)", lines[1])
    assert.matches("0%.5%-0%.6    1 #$", lines[9])
  end)
end)

describe("distill.reverse_kl_datums", function()
  it("gives each completion token the advantage teacher_lp - student_lp", function()
    -- The teacher's forward pass answers per position of the datum it is given; a table
    -- with that method stands in for the trainer client (the e2e test uses the real one).
    local seen
    local teacher = {forward = function(_, datums, loss)
      seen = {datums = datums, loss = loss}
      return {loss_fn_outputs = {{logprobs = {-9, -0.5, -1.0}}}}
    end}
    local groups = {{{prompt_tokens = {97, 58}, tokens = {101, 257}, logprobs = {-2.0, -0.25}}}}
    local datums, info = distill.reverse_kl_datums(groups, teacher)
    assert.equal("cross_entropy", seen.loss)
    assert.same({58, 101, 257}, seen.datums[1].loss_fn_inputs.target_tokens)
    assert.is_nil(seen.datums[1].loss_fn_inputs.advantages)
    local inp = datums[1].loss_fn_inputs
    assert.same({0, 1, 1}, inp.weights)
    assert.same({0, -0.5 + 2.0, -1.0 + 0.25}, inp.advantages)
    assert.same({0, -2.0, -0.25}, inp.logprobs)
    assert.near(((-2.0 + 0.5) + (-0.25 + 1.0)) / 2, info.reverse_kl, 1e-12)
    assert.equal(2, info.tokens)
  end)
end)
