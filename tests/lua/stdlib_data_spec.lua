-- flare.data: JSONL and CSV files, seeded shuffles, splits and batches, and the files
-- read recorded in the run's config.json.
local data = flare.data
local fs = flare.fs
local helpers = require("spec_helpers")
local quiet = helpers.quiet
local json = flare.json

local dir
local function write(name, text)
  fs.write_file_atomic(dir .. "/" .. name, text)
  return dir .. "/" .. name
end

describe("flare.data", function()
  before_each(function()
    dir = helpers.temp_path("data")
    fs.mkdir_p(dir)
  end)
  after_each(function() fs.remove(dir, {recursive = true}) end)

  it("reads JSONL rows with the file's sha256 and size", function()
    local text = '{"prompt":"1+1=","completion":"2"}\n\n{"prompt":"2+2=","completion":"4"}\n'
    local ds = data.load(write("a.jsonl", text))
    assert.equal(2, #ds.rows)
    assert.equal("4", ds.rows[2].completion)
    assert.equal("jsonl", ds.format)
    assert.equal(fs.sha256(text), ds.sha256)
    assert.equal(#text, ds.bytes)
  end)

  it("names the file, the line and the byte offset of a bad JSONL line", function()
    local path = write("bad.jsonl", '{"a":1}\n{"a":2,}\n')
    assert.error_matches(function() data.load(path) end,
      "bad%.jsonl line 2: invalid JSON at byte offset 15")
    path = write("list.jsonl", '{"a":1}\n\n[1,2]\n')
    assert.error_matches(function() data.load(path) end,
      "list%.jsonl line 3 %(byte offset 9%): expected a JSON object")
  end)

  it("reads RFC 4180 CSV: quotes, doubled quotes, line breaks in fields, CRLF", function()
    local path = write("a.csv",
      'q,a,note\r\n"1+1=",2,""\r\n"say ""hi""\nthere","x,y",plain\r\nlast,3,\n')
    local rows = data.load(path).rows
    assert.same({{q = "1+1=", a = "2", note = ""},
      {q = 'say "hi"\nthere', a = "x,y", note = "plain"},
      {q = "last", a = "3", note = ""}}, rows)
    assert.same({{"q", "a"}, {"1", "2"}}, data.read_csv(write("b.csv", "q,a\n1,2"),
      {header = false}))
  end)

  it("names the file, line and byte offset of bad CSV", function()
    assert.error_matches(function() data.load(write("c1.csv", 'q,a\n1,2\n"open,3\n')) end,
      "c1%.csv line 3 %(byte offset 8%): a quoted field is not closed")
    assert.error_matches(function() data.load(write("c2.csv", 'q,a\n1,2\n"x"y,3\n')) end,
      "c2%.csv line 3 %(byte offset 11%): unexpected text after a closing quote")
    assert.error_matches(function() data.load(write("c3.csv", 'q,a\n"a\nb",2\n1,2,3\n')) end,
      "c3%.csv line 4 %(byte offset 12%): 3 fields, the header has 2")
    assert.error_matches(function() data.load(write("c4.csv", 'q,a\nab"c,1\n')) end,
      "c4%.csv line 2 %(byte offset 6%): a quote inside an unquoted field")
    assert.error_matches(function() data.load(write("c5.txt", "x")) end,
      "cannot tell the format")
    assert.error_matches(function() data.load(dir .. "/missing.jsonl") end, "no such file")
  end)

  it("shuffles, splits and batches the same way for the same seed", function()
    local rows = {}
    for i = 1, 20 do rows[i] = {id = i} end
    local a, b = data.shuffle(rows, 7), data.shuffle(rows, 7)
    assert.same(a, b)
    local function order(list)
      local ids = {}
      for i, r in ipairs(list) do ids[i] = r.id end
      return table.concat(ids, ",")
    end
    assert.is_true(order(rows) ~= order(a))
    assert.is_true(order(a) ~= order(data.shuffle(rows, 8)))
    assert.equal(1, rows[1].id)  -- the input is untouched

    local train, eval = data.split(rows, {eval = 0.25, seed = 1})
    assert.equal(15, #train)
    assert.equal(5, #eval)
    local seen = {}
    for _, r in ipairs(train) do seen[r.id] = true end
    for _, r in ipairs(eval) do
      assert.is_nil(seen[r.id])
      seen[r.id] = true
    end
    for i = 1, 20 do assert.is_true(seen[i]) end
    assert.equal(3, #select(2, data.split(rows, {eval = 3})))

    local steps, per_epoch = 0, {0, 0}
    for batch, at in data.batches(rows, {batch_size = 6, epochs = 2, seed = 3}) do
      steps = steps + 1
      assert.equal(steps, at.step)
      per_epoch[at.epoch] = per_epoch[at.epoch] + #batch
    end
    assert.equal(8, steps)  -- 6 + 6 + 6 + 2 per epoch
    assert.same({20, 20}, per_epoch)
    local dropped = 0
    for _ in data.batches(rows, {batch_size = 6, drop_last = true}) do dropped = dropped + 1 end
    assert.equal(3, dropped)
    local first = data.batches(rows, {batch_size = 4, seed = 3})()
    assert.same(first, data.batches(rows, {batch_size = 4, seed = 3})())
  end)

  it("records every file read in the run's config.json (path, sha256, rows)", function()
    local text = '{"x":1}\n{"x":2}\n'
    local path = write("d.jsonl", text)
    local run
    quiet(function()
      run = flare.recipe{name = "data-spec", config = {steps = 1}, args = {},
        runs_dir = dir .. "/runs", progress = false}
    end)
    data.load(path)
    data.load(path)  -- once per file and content
    data.load(write("e.csv", "a\n1\n"), {run = run})
    local saved = json.decode(fs.read_file(run.dir .. "/config.json"))
    assert.equal(2, #saved.data_files)
    assert.equal(path, saved.data_files[1].path)
    assert.equal(fs.sha256(text), saved.data_files[1].sha256)
    assert.equal(2, saved.data_files[1].rows)
    assert.equal("csv", saved.data_files[2].format)
    assert.equal("data-spec", saved.name)  -- the rest of config.json is kept
    -- The data pointer the release registry takes from config.json.
    local pointer = require("flare.release.registry").data_pointer(saved)
    assert.equal(fs.sha256(text), pointer.files[1].sha256)
    assert.truthy(#data.files_read() >= 3)
  end)
end)
