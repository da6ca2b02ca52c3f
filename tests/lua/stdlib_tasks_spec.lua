local tasks = require("flare.tasks")

describe("tasks.rng", function()
  it("is deterministic per seed and differs across seeds", function()
    local a, b, c = tasks.rng(7), tasks.rng(7), tasks.rng(8)
    local xs, ys, zs = {}, {}, {}
    for i = 1, 20 do xs[i], ys[i], zs[i] = a:int(1, 1000), b:int(1, 1000), c:int(1, 1000) end
    assert.same(xs, ys)
    assert.falsy(require("flare.test").deep_equal(xs, zs, "xs"))
  end)

  it("stays within bounds and covers them", function()
    local r = tasks.rng(1)
    local seen = {}
    for _ = 1, 500 do
      local v = r:int(3, 6)
      assert.truthy(v >= 3 and v <= 6)
      seen[v] = true
    end
    assert.same({[3] = true, [4] = true, [5] = true, [6] = true}, seen)
  end)
end)

describe("tasks", function()
  it("generate the same problems for the same seed", function()
    for _, name in ipairs(tasks.names) do
      local a = tasks.get(name, {seed = 3}):sample(5)
      local b = tasks.get(name, {seed = 3}):sample(5)
      assert.same(a, b, name)
      assert.equal(5, #a)
      assert.equal("string", type(a[1].prompt))
    end
  end)

  it("give every problem a reference answer that verifies", function()
    for _, name in ipairs(tasks.names) do
      local t = tasks.get(name, {seed = 11})
      for _, p in ipairs(t:sample(10)) do
        assert.truthy(t:verify(p, tostring(p.answer)),
          name .. ": " .. p.prompt .. " " .. tostring(p.answer))
        assert.equal(1, t:reward(p, tostring(p.answer)), name)
      end
    end
  end)

  it("addition rewards the right sum only", function()
    local t = tasks.addition{seed = 1}
    local p = t:sample(1)[1]
    assert.equal(p.x + p.y, p.answer)
    assert.equal(1, t:reward(p, tostring(p.answer)))
    assert.equal(0, t:reward(p, tostring(p.answer + 1)))
    assert.truthy(t:verify(p, " " .. p.answer .. "\nmore text 99"))
  end)

  it("reverse and sort give LCS credit and verify exactly", function()
    local r = tasks.reverse{seed = 2}
    local p = r:sample(1)[1]
    assert.equal(p.input:reverse(), p.answer)
    assert.equal(1, r:reward(p, p.answer))
    assert.truthy(r:reward(p, p.answer:sub(2)) < 1)
    assert.truthy(r:reward(p, p.answer:sub(2)) > 0.5)
    assert.falsy(r:verify(p, p.answer:sub(2)))
    local s = tasks.sort{seed = 2}
    local q = s:sample(1)[1]
    local chars = {}
    for c in q.input:gmatch(".") do chars[#chars + 1] = c end
    table.sort(chars)
    assert.equal(table.concat(chars), q.answer)
    assert.truthy(s:verify(q, q.answer))
  end)

  it("countdown problems are solvable by their own expression", function()
    local t = tasks.countdown{seed = 5}
    for _, p in ipairs(t:sample(20)) do
      assert.equal(1, t:reward(p, p.answer), p.prompt .. " " .. p.answer)
    end
    local p = t:sample(1)[1]
    assert.equal(0, t:reward(p, "999"))
  end)

  it("vowels rewards vowels among the first `length` bytes and verifies vowels only", function()
    local t = tasks.vowels{seed = 0}
    local p = t:sample(1)[1]
    assert.equal(1, t:reward(p, "aeio"))
    assert.equal(1, t:reward(p, "aeiouxyz"))
    assert.equal(0.5, t:reward(p, "axex"))
    assert.equal(0.5, t:reward(p, "ae"))
    assert.equal(0, t:reward(p, ""))
    assert.equal(0.5, tasks.vowels{length = 2}:reward(p, "ax"))
    assert.truthy(t:verify(p, "aaa"))
    assert.falsy(t:verify(p, "aab"))
  end)

  it("reject unknown tasks and options", function()
    assert.error_matches(function() tasks.get("nope") end, "unknown task 'nope'")
    assert.error_matches(function() tasks.addition{digit = 2} end, "unknown option 'digit'")
  end)
end)

describe("flare.tasks.export", function()
  it("writes a JSONL data set whose rows verify with their own completion", function()
    local dir = "/tmp/flare-tasks-export-" .. flare.fs.getpid() .. "-" ..
      math.floor(flare.clock() * 1e6)
    local a = tasks.export("addition", dir .. "/a.jsonl", {n = 50, seed = 3, digits = 1})
    local b = tasks.export("addition", dir .. "/b.jsonl", {n = 50, seed = 3, digits = 1})
    assert.equal(50, a.rows)
    assert.equal(a.sha256, b.sha256)  -- the same bytes for the same seed
    assert.equal(a.sha256, flare.fs.sha256_file(a.path))
    local rows = flare.data.load(a.path).rows
    local task = tasks.get("addition")
    for _, row in ipairs(rows) do
      assert.is_true(task:verify(row, row.completion))
      assert.equal(row.prompt, row.messages[1].content)
      assert.equal(row.completion, row.messages[2].content)
      assert.equal("assistant", row.messages[2].role)
    end
    assert.truthy(tonumber(rows[1].completion) <= 18)
    local c = tasks.export("countdown", dir .. "/c.jsonl", {n = 20, seed = 1})
    for _, row in ipairs(flare.data.read_jsonl(c.path)) do
      assert.is_true(tasks.get("countdown"):verify(row, row.completion))
    end
    assert.error_matches(function() tasks.export("nope", dir .. "/x.jsonl") end, "unknown task")
    flare.fs.remove(dir, {recursive = true})
  end)
end)
