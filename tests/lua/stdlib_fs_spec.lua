local fs = require("flare.fs")

local root = os.getenv("TMPDIR") or "/tmp"
local dir

describe("flare.fs", function()
  before_each(function()
    dir = root .. "/flare-fs-spec-" .. fs.getpid() .. "-" .. math.floor(flare.clock() * 1e6)
    fs.mkdir_p(dir .. "/a/b")
  end)
  after_each(function() fs.remove(dir, {recursive = true}) end)

  it("creates nested directories and lists them sorted", function()
    assert.truthy(fs.is_dir(dir .. "/a/b"))
    fs.write_file_atomic(dir .. "/a/z.txt", "z")
    fs.write_file_atomic(dir .. "/a/c.txt", "c")
    assert.same({"b", "c.txt", "z.txt"}, fs.list_dir(dir .. "/a"))
  end)

  it("writes atomically and reads back, leaving no temp file", function()
    local p = dir .. "/f.bin"
    fs.write_file_atomic(p, "one\0two")
    fs.write_file_atomic(p, "three\0four")
    assert.equal("three\0four", fs.read_file(p))
    assert.same({"a", "f.bin"}, fs.list_dir(dir))
  end)

  it("raises an io error naming the function and the path when it cannot write", function()
    local ok, err = pcall(fs.write_file_atomic, dir .. "/missing/f.bin", "x")
    assert.equal(false, ok)
    assert.equal("io", err.code)
    assert.matches("^flare%.fs%.write_file_atomic: cannot create .*/missing/f%.bin", err.message)
    assert.same({"a"}, fs.list_dir(dir))
  end)

  it("returns nil and a message for a missing file", function()
    local v, err = fs.read_file(dir .. "/missing")
    assert.is_nil(v)
    assert.matches("cannot open .*missing", err)
    assert.falsy(fs.exists(dir .. "/missing"))
  end)

  it("appends lines and refuses embedded newlines", function()
    local p = dir .. "/log.jsonl"
    fs.append_line(p, "{\"a\":1}")
    fs.append_line(p, "{\"a\":2}", {fsync = true})
    assert.equal("{\"a\":1}\n{\"a\":2}\n", fs.read_file(p))
    assert.error_matches(function() fs.append_line(p, "x\ny") end, "byte offset 1")
  end)

  it("removes files and trees", function()
    fs.write_file_atomic(dir .. "/a/b/f", "x")
    assert.falsy(fs.remove(dir .. "/nothing"))
    assert.error_matches(function() fs.remove(dir .. "/a") end, "cannot remove")
    assert.truthy(fs.remove(dir .. "/a", {recursive = true}))
    assert.falsy(fs.exists(dir .. "/a"))
  end)

  it("hashes with SHA-256", function()
    assert.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", fs.sha256(""))
    assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
      fs.sha256("abc"))
    local long = string.rep("a", 1000000)
    assert.equal("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
      fs.sha256(long))
    fs.write_file_atomic(dir .. "/h", long)
    assert.equal(fs.sha256(long), fs.sha256_file(dir .. "/h"))
  end)

  it("names the bad argument", function()
    assert.error_matches(function() fs.mkdir_p("") end,
      "flare%.fs%.mkdir_p: argument 'path' must not be empty")
    assert.error_matches(function() fs.exists(3) end,
      "flare%.fs%.exists: argument 'path' must be a string, got number")
    assert.error_matches(function() fs.mkdir_p("/proc/flare-no") end,
      "cannot create '/proc/flare%-no'")
  end)

  it("reports the process id and whether an fd is a terminal", function()
    assert.truthy(fs.getpid() > 1)
    assert.equal("boolean", type(fs.isatty(1)))
    assert.falsy(fs.isatty(987))
  end)
end)
