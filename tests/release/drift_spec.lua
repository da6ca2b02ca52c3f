-- Input drift (Jensen-Shannon distance) and reward collapse (distinct-n, length growth)
-- against values computed by hand.
local drift = require("flare.release.drift")
local release = require("flare.release")
local fs = require("flare.fs")
local helpers = require("release_helpers")

describe("flare.release drift", function()
  it("measures the Jensen-Shannon distance of token distributions", function()
    -- live "aa": P = {a = 1}; train "ab": Q = {a = .5, b = .5}; M = {a = .75, b = .25}
    -- KL(P||M) = log2(4/3) = 0.4150375; KL(Q||M) = .5 log2(2/3) + .5 log2(2) = 0.2075187
    -- JSD = 0.3112781, distance = 0.5579230
    local r = drift.drift({"ab"}, {"aa"})
    assert.near(0.3112781, r.divergence, 1e-6)
    assert.near(0.5579230, r.distance, 1e-6)
    assert.equal(2, r.train_tokens)
    assert.is_true(r.alert)  -- above the default 0.3
    assert.same({"a", "b"}, {r.top[1].token, r.top[2].token})  -- |change| .5 each, by name
    assert.equal(0, drift.drift({"abc", "cab"}, {"bca"}).distance)
    assert.equal(1, drift.drift({"aaa"}, {"bbb"}).distance)
    local words = drift.drift({"the cat"}, {"the dog"}, {tokenizer = "words", max_distance = 0.9})
    -- P = {the .5, dog .5}, Q = {the .5, cat .5}: JSD = 0.5, distance sqrt(.5)
    assert.near(math.sqrt(0.5), words.distance, 1e-12)
    assert.is_false(words.alert)
    assert.equal(r.distance, release.drift({"ab"}, {"aa"}).distance)
  end)

  it("measures distinct-n and length growth against the parent", function()
    -- candidate "abab" twice: unigrams 8, distinct 2 -> 0.25; bigrams 6 (ab ba ab each), distinct
    -- 2 -> 1/3; parent "abcd", "efgh": distinct-1 = 1, distinct-2 = 1, mean length 4
    local r = drift.collapse({"abab", "abab"}, {"abcd", "efgh"})
    assert.near(0.25, r.candidate.distinct_1, 1e-12)
    assert.near(1 / 3, r.candidate.distinct_2, 1e-12)
    assert.equal(1, r.parent.distinct_1)
    assert.equal(0, r.length_growth)
    assert.near(0.75, r.distinct_drop[1], 1e-12)
    assert.is_true(r.alert)
    assert.matches("distinct%-1 fell 75%%", r.reasons[1])
    local longer = drift.collapse({"abcdefgh"}, {"abcd"}, {max_distinct_drop = 1})
    assert.equal(1, longer.length_growth)
    assert.matches("length grew 100%%", longer.reasons[1])
    assert.is_false(drift.collapse({"abcd"}, {"wxyz"}).alert)
  end)

  it("reads texts from JSONL, suite results and plain lines, and names bad input", function()
    local dir = helpers.temp_dir()
    fs.write_file_atomic(dir .. "/train.jsonl", '{"prompt": "ab"}\n"ab"\n')
    fs.write_file_atomic(dir .. "/live.txt", "aa\naa\n")
    fs.write_file_atomic(dir .. "/results.json",
      '{"suite_id": "s", "items": [{"id": 1, "text": "aa"}]}')
    fs.write_file_atomic(dir .. "/bad.jsonl", '{"prompt": "ab"}\n{"x": 1}\n')
    assert.near(0.5579230, drift.drift_files(dir .. "/train.jsonl", dir .. "/live.txt").distance,
      1e-6)
    local from_results = drift.drift_files(dir .. "/train.jsonl", dir .. "/results.json")
    assert.near(0.5579230, from_results.distance, 1e-6)
    local ok, err = pcall(drift.drift_files, dir .. "/bad.jsonl", dir .. "/live.txt")
    local _
    assert.is_false(ok)
    assert.matches("bad%.jsonl line 2: expected a string or an object", err.message)
    _, err = pcall(drift.drift_files, dir .. "/none.jsonl", dir .. "/live.txt")
    assert.equal("not_found", err.code)
    _, err = pcall(drift.drift, {"a"}, {})
    assert.matches("argument 'live_texts' is empty", err.message)
    _, err = pcall(drift.drift, {"a"}, {"b"}, {tokenizer = "chars"})
    assert.matches("option 'tokenizer'", err.message)
    local r = flare.proc.run{argv = {flare.executable, "release", "drift", "--train",
      dir .. "/train.jsonl", "--live", dir .. "/live.txt"}, timeout_s = 30}
    assert.equal(1, r.status)  -- the alert fires
    assert.matches("Jensen%-Shannon distance 0%.5579", r.stdout)
    r = flare.proc.run{argv = {flare.executable, "release", "collapse", "--candidate",
      dir .. "/live.txt", "--parent", dir .. "/live.txt"}, timeout_s = 30}
    assert.equal(0, r.status, r.stderr)
    assert.matches("reward collapse check: ok", r.stdout)
    fs.remove(dir, {recursive = true})
  end)
end)
