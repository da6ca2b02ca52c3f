-- flare.jsonl (run files) and flare.format (numbers, durations, sparklines), shared by
-- flare.recipe and flare.report.
local jsonl = require("flare.jsonl")
local format = require("flare.format")
local fs = require("flare.fs")

local dir

local function write(name, text)
  local path = dir .. "/" .. name
  fs.write_file_atomic(path, text)
  return path
end

describe("flare.jsonl", function()
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    fs.mkdir_p(dir)
  end)
  after_each(function() fs.remove(dir, { recursive = true }) end)

  it("reads objects line by line, blank lines ignored; nil for a missing file", function()
    local path = write("a.jsonl", '{"a": 1}\n\n{"b": [2]}\n')
    assert.same({ { a = 1 }, { b = { 2 } } }, jsonl.read(path))
    assert.is_nil(jsonl.read(dir .. "/missing.jsonl"))
    assert.same({}, jsonl.read(write("empty.jsonl", "")))
  end)

  it("skips a torn last line and keeps a whole one without its newline", function()
    assert.same({ { a = 1 } }, jsonl.read(write("torn.jsonl", '{"a": 1}\n{"b": tr')))
    assert.same({ { a = 1 } }, jsonl.read(write("num.jsonl", '{"a": 1}\n12')))
    assert.same({ { a = 1 }, { b = 2 } }, jsonl.read(write("whole.jsonl", '{"a": 1}\n{"b": 2}')))
  end)

  it("names the file and line of any other bad line", function()
    local path = write("bad.jsonl", '{"a": 1}\n{"a": \n{"a": 3}\n')
    assert.error_matches(function() jsonl.read(path) end, "bad%.jsonl line 2: ")
    path = write("list.jsonl", '[1]\n')
    assert.error_matches(function() jsonl.read(path) end, "line 1: expected a JSON object")
    path = write("torn_end.jsonl", '{"a": 1}\n{"a": \n')
    assert.error_matches(function() jsonl.read(path) end, "line 2",
      "a bad line that ends in a newline was written whole")
  end)

  it("drops a torn tail so that appended lines stay readable", function()
    local path = write("c.jsonl", '{"a": 1}\n{"b": ')
    assert.is_true(jsonl.drop_torn_tail(path))
    assert.equal('{"a": 1}\n', fs.read_file(path))
    assert.is_false(jsonl.drop_torn_tail(path))
    fs.append_line(path, '{"c": 3}')
    assert.same({ { a = 1 }, { c = 3 } }, jsonl.read(path))
    assert.is_false(jsonl.drop_torn_tail(dir .. "/missing.jsonl"))
  end)
end)

describe("flare.format", function()
  it("formats durations", function()
    assert.equal("-", format.duration(nil))
    assert.equal("0.0 s", format.duration(-3))
    assert.equal("4.2 s", format.duration(4.2))
    assert.equal("3:07", format.duration(187))
    assert.equal("1:02:03", format.duration(3723))
  end)

  it("formats numbers", function()
    assert.equal("-", format.number(nil))
    assert.equal("12", format.number(12))
    assert.equal("0.0314", format.number(0.0314))
    assert.equal("1.23e+06", format.number(1234567.5))
  end)

  it("draws sparklines over the values' range or a given one", function()
    assert.equal("▁▂▃▄▅▆▇█", format.sparkline({ 1, 2, 3, 4, 5, 6, 7, 8 }))
    assert.equal("▄▄▄", format.sparkline({ 1, 1, 1 }), "a flat series sits in the middle")
    assert.equal("▁▅█", format.sparkline({ 0, 0.5, 1 }))
    assert.equal("▁▁", format.sparkline({ 0, 0 }, { lo = 0, hi = 1 }))
    assert.equal("█", format.sparkline({ 2 }, { lo = 0, hi = 1 }), "clamped to the range")
    assert.equal("▁█", format.sparkline({ 0, 0, 1, 1 }, { width = 2 }), "averaged into buckets")
    assert.equal("", format.sparkline({}))
  end)
end)
