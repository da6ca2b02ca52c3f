-- Promotion gates: the statistics against values computed by hand (and by an independent
-- implementation of the same seeded generator), the gates on a frozen suite's results,
-- and their refusals.
local stats = require("flare.release.stats")
local suite_mod = require("flare.release.suite")
local gate = require("flare.release.gate")
local fs = require("flare.fs")
local json = require("flare.json")
local helpers = require("release_helpers")

local expect_error = helpers.expect_error

describe("flare.release.stats", function()
  it("computes percentiles by linear interpolation between closest ranks", function()
    assert.equal(2.5, stats.percentile({1, 2, 3, 4}, 0.5))
    assert.near(3.85, stats.percentile({1, 2, 3, 4}, 0.95), 1e-12)  -- h = 3 * 0.95 + 1
    assert.equal(1, stats.percentile({1, 2, 3, 4}, 0))
    assert.equal(4, stats.percentile({1, 2, 3, 4}, 1))
    assert.equal(7, stats.percentile({7}, 0.95))
  end)

  it("gives the exact two-sided sign test", function()
    -- 8 better, 2 worse, 3 ties: p = 2 (C(10,0) + C(10,1) + C(10,2)) / 2^10 = 112 / 1024
    local base = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 1}
    local cand = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 1}
    local t = stats.sign_test(base, cand)
    assert.same({better = 8, worse = 2, ties = 3, p = 0.109375}, t)
    -- 5 of 5 better: p = 2 / 32
    assert.equal(0.0625, stats.sign_test({0, 0, 0, 0, 0}, {1, 1, 1, 1, 1}).p)
    assert.equal(1, stats.sign_test({1, 0}, {1, 0}).p)
    -- symmetric: 5 better, 5 worse gives p = 1 (capped)
    assert.equal(1, stats.sign_test({0, 0, 0, 0, 0, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 0, 0, 0, 0,
      0}).p)
  end)

  it("bootstraps paired differences deterministically for a seed", function()
    -- differences {1, 0, 0, -1, 1}; seed 42, 5 resamples. An independent implementation of
    -- the generator (Park-Miller, seeded as flare.tasks.rng) draws the index lists
    -- {3,2,1,2,2} {5,2,5,1,2} {4,1,2,1,2} {4,5,5,3,1} {2,2,2,2,5}: means 0.2 0.6 0.2 0.4 0.2,
    -- sorted 0.2 0.2 0.2 0.4 0.6; 2.5th percentile h = 1.1 -> 0.2, 97.5th h = 4.9 -> 0.58.
    local b = stats.paired_bootstrap({0, 1, 0, 1, 0}, {1, 1, 0, 0, 1}, {resamples = 5, seed = 42})
    assert.near(0.2, b.diff, 1e-12)
    assert.near(0.2, b.lo, 1e-12)
    assert.near(0.58, b.hi, 1e-12)
    local again = stats.paired_bootstrap({0, 1, 0, 1, 0}, {1, 1, 0, 0, 1}, {resamples = 5,
      seed = 42})
    assert.same(b, again)
    -- equal differences leave no spread
    local flat = stats.paired_bootstrap({0, 0, 0}, {0.5, 0.5, 0.5}, {resamples = 50, seed = 1})
    assert.same({0.5, 0.5, 0.5}, {flat.diff, flat.lo, flat.hi})
    -- a fair coin of improvements: the CI holds zero
    local base, cand = {}, {}
    for i = 1, 40 do base[i], cand[i] = i % 2, (i + 1) % 2 end
    local coin = stats.paired_bootstrap(base, cand, {resamples = 1000, seed = 3})
    assert(coin.lo < 0 and coin.hi > 0, "CI " .. coin.lo .. " .. " .. coin.hi)
  end)
end)

local SPEC = {name = "arith", tasks = {{task = "addition", seed = 1, n = 20},
  {task = "reverse", seed = 2, n = 20}},
  sampling = {temperature = 0, max_tokens = 12},
  slices = {{name = "addition", task = "addition"}, {name = "reverse", task = "reverse"},
    {name = "short", max_prompt_chars = 6, safety_critical = true}}}

-- Results where item i is correct when pick(item, i) is true.
local function results(suite, version, pick, extra)
  local items = {}
  for i, item in ipairs(suite.items) do
    items[i] = {id = item.id, task = item.task, correct = pick(item, i) and 1 or 0,
      tokens = 20, latency_ms = 10 + i}
    for k, v in pairs(extra or {}) do items[i][k] = v end
  end
  return {suite_id = suite.id, version = version, items = items}
end

describe("flare.release gates", function()
  local dir
  before_each(function()
    dir = helpers.temp_dir()
  end)
  after_each(function() fs.remove(dir, {recursive = true}) end)

  it("hashes everything frozen into the suite id", function()
    local a = suite_mod.load(SPEC)
    assert.matches("^suite%-%x+$", a.id)
    assert.equal(a.id, suite_mod.load(SPEC).id)
    assert.equal(40, #a.items)
    local changed = json.decode(json.encode(SPEC))
    changed.tasks[1].seed = 9
    assert(suite_mod.load(changed).id ~= a.id, "seed change kept the id")
    changed = json.decode(json.encode(SPEC))
    changed.sampling.temperature = 0.5
    assert(suite_mod.load(changed).id ~= a.id, "sampling change kept the id")
    changed = json.decode(json.encode(SPEC))
    changed.slices[3].safety_critical = false
    assert(suite_mod.load(changed).id ~= a.id, "slice change kept the id")
  end)

  it("passes a candidate better everywhere and writes gate.json and gate.html", function()
    local s = suite_mod.load(SPEC)
    local base = results(s, "f@v1", function(_, i) return i % 2 == 0 end)
    local cand = results(s, "f@v2", function() return true end)
    local r = gate.gate{suite = s, baseline = base, candidate = cand, out_dir = dir,
      gates = {margin = 0.1, max_tokens_per_request = 25, max_p95_latency_ms = 100}}
    assert.is_true(r.passed)
    assert.same({}, r.failed)
    assert.near(0.5, r.aggregate.diff, 1e-12)
    assert(r.aggregate.ci_lo > 0)
    assert.equal(20, r.cost.tokens_per_request)
    -- latencies 11..50: p95 at h = 39 * 0.95 + 1 = 38.05 -> 48.05
    assert.near(48.05, r.latency.p95_ms, 1e-9)
    local saved = json.decode(fs.read_file(dir .. "/gate.json"))
    assert.equal(true, saved.passed)
    local page = fs.read_file(dir .. "/gate.html")
    assert.matches("<svg", page)
    assert.matches("reverse", page)
    assert.matches("95%% CI", page)
  end)

  it("blocks a candidate that regresses a slice, with the numbers", function()
    local s = suite_mod.load(SPEC)
    local base = results(s, nil, function(item) return item.task == "reverse" end)
    -- all additions right now, but 4 of 20 reversals lost
    local lost = 0
    local cand = results(s, nil, function(item)
      if item.task == "addition" then return true end
      lost = lost + 1
      return lost > 4
    end)
    local r = gate.gate{suite = s, baseline = base, candidate = cand,
      gates = {slice_threshold = 0.1}}
    assert.is_false(r.passed)
    local failed = table.concat(r.failed, ",")
    assert.matches("slice:reverse", failed)
    assert(not failed:find("aggregate"), failed)
    for _, sl in ipairs(r.slices) do
      if sl.name == "reverse" then
        assert.near(-0.2, sl.diff, 1e-12)
        assert.equal(0.1, sl.threshold)
      end
    end
    assert.matches("FAIL slice:reverse +correct 1.0000 %-> 0.8000: diff %-0.2000", gate.summary(r))
    -- a looser per-slice threshold lets it through
    local r2 = gate.gate{suite = s, baseline = base, candidate = cand,
      gates = {slice_threshold = 0.1, slices = {reverse = {max_regression = 0.25}}}}
    assert.is_true(r2.passed, table.concat(r2.failed, ","))
  end)

  it("blocks any regression on a safety-critical slice and over-budget cost or latency", function()
    local s = suite_mod.load(SPEC)
    local short
    for _, sl in ipairs(s.slices) do if sl.name == "short" then short = sl end end
    local first_short
    for _, item in ipairs(s.items) do
      if short.members[item.id] then first_short = item.id break end
    end
    assert(first_short, "the suite has a short prompt")
    local base = results(s, nil, function() return false end)
    for _, it_ in ipairs(base.items) do if it_.id == first_short then it_.correct = 1 end end
    -- the candidate gets every long prompt right but loses the one short item it had
    local cand = results(s, nil, function(item) return not short.members[item.id] end,
      {tokens = 90, latency_ms = 500})
    local r = gate.gate{suite = s, baseline = base, candidate = cand,
      gates = {slice_threshold = 0.5, max_tokens_per_request = 64, max_p95_latency_ms = 250}}
    local failed = table.concat(r.failed, ",")
    assert.matches("slice:short", failed)
    assert.matches("cost", failed)
    assert.matches("latency", failed)
    assert(not failed:find("aggregate"), failed)
  end)

  it("refuses results of another suite, a missing suite and a missing item", function()
    local s = suite_mod.load(SPEC)
    local base = results(s, nil, function() return false end)
    local cand = results(s, nil, function() return true end)
    local other = json.decode(json.encode(cand))
    other.suite_id = "suite-0000000000000000"
    expect_error(function() gate.gate{suite = s, baseline = base, candidate = other} end,
      "failed_precondition", "different suites: the candidate results are of suite%-0000")
    expect_error(function() gate.gate{suite = dir .. "/none.json", baseline = base,
      candidate = cand} end,
      "not_found", "missing suite: no file .*none%.json")
    -- versions of two bases are not compared
    local reg = dir .. "/reg.sqlite"
    local release = require("flare.release")
    release.register{family = "a", base_model = "tiny-gpt", snapshot = "s", registry = reg,
      weights_sha256 = fs.sha256("a")}
    release.register{family = "b", base_model = "llama", snapshot = "s", registry = reg,
      weights_sha256 = fs.sha256("b")}
    base.version, cand.version = "a@v1", "b@v1"
    expect_error(function() gate.gate{suite = s, baseline = base, candidate = cand,
      registry = reg} end,
      "failed_precondition", "version from another base: baseline a@v1 builds on tiny%-gpt, " ..
      "candidate b@v1 on llama")
    cand.version = "a@v9"
    expect_error(function() gate.gate{suite = s, baseline = base, candidate = cand,
      registry = reg} end,
      "not_found", "no version a@v9")
    require("flare.release.store").close_all()
    table.remove(cand.items, 3)
    expect_error(function() gate.gate{suite = s, baseline = base, candidate = cand} end,
      "failed_precondition",
        "candidate results lack suite item addition%-1%-3 %(they cover 39 of 40")
    expect_error(function() suite_mod.load{name = "x", tasks = {{task = "additon", seed = 1,
      n = 2}}} end,
      "invalid_argument", "tasks%[1%]%.task': unknown task 'additon' %(did you mean 'addition'%?%)")
    expect_error(function() suite_mod.load{name = "x", tasks = {{task = "sort", n = 2}}} end,
      "invalid_argument", "tasks%[1%]%.seed' is required")
    expect_error(function()
      gate.gate{suite = s, baseline = base, candidate = base, gates = {safety_critical = {"shrot"}}}
    end, "invalid_argument", "unknown slice 'shrot' %(did you mean 'short'%?%)")
  end)

  it("exits 0 or 1 from flare release gate and refuses a missing suite", function()
    local s = suite_mod.load(SPEC)
    fs.write_file_atomic(dir .. "/suite.json", json.encode(SPEC))
    fs.write_file_atomic(dir .. "/base.json", json.encode(results(s, nil,
      function() return false end)))
    fs.write_file_atomic(dir .. "/good.json", json.encode(results(s, nil,
      function() return true end)))
    local function gate_cli(cand, suite)
      return flare.proc.run{argv = {flare.executable, "release", "gate", "--suite", suite or
        (dir .. "/suite.json"), "--baseline", dir .. "/base.json", "--candidate", cand,
        "--out", dir .. "/out"}, timeout_s = 60}
    end
    local ok = gate_cli(dir .. "/good.json")
    assert.equal(0, ok.status, ok.stderr)
    assert.matches("gate PASSED", ok.stdout)
    assert(fs.exists(dir .. "/out/gate.html"))
    local bad = gate_cli(dir .. "/base.json")
    assert.equal(1, bad.status)
    assert.matches("gate FAILED", bad.stdout)
    local missing = gate_cli(dir .. "/good.json", dir .. "/nope.json")
    assert.equal(1, missing.status)
    assert.matches("missing suite: no file", missing.stderr)
  end)
end)
