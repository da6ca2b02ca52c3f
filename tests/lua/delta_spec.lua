-- flare.delta: in-memory and file deltas, inspection, checksums and bad input.
local delta = flare.delta

-- n little-endian bf16-sized elements from a deterministic pattern.
local function bytes_of(n, seed)
  local t = {}
  for i = 1, n do
    local v = (i * 2654435761 + seed * 40503) % 65536
    t[#t + 1] = string.char(v % 256, math.floor(v / 256))
  end
  return table.concat(t)
end

-- Copy of s with the 2-byte element at 1-based index i replaced.
local function poke(s, i, a, b)
  return s:sub(1, 2 * i - 2) .. string.char(a, b) .. s:sub(2 * i + 1)
end

local function tmpdir()
  local p = os.tmpname()
  os.remove(p)
  os.execute("mkdir -p '" .. p .. "'")
  return p
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

describe("flare.delta.adler32", function()
  it("matches the RFC 1950 values", function()
    assert.equal(1, delta.adler32(""))
    assert.equal(0x11E60398, delta.adler32("Wikipedia"))
    assert.equal(0x11E60398, delta.adler32("pedia", delta.adler32("Wiki")))
  end)

  it("rejects a non-string", function()
    assert.error_matches(function() delta.adler32(5) end,
      "flare%.delta%.adler32: argument 's' must be a string, got number")
  end)
end)

describe("flare.delta.compress / apply", function()
  local a, b
  before_each(function()
    local w = bytes_of(1000, 1)
    a = { w = { dtype = "BF16", shape = { 10, 100 }, data = w },
          gone = { dtype = "U8", shape = { 3 }, data = "xyz" } }
    local w2 = poke(poke(w, 5, 1, 2), 700, 0, 128)
    b = { w = { dtype = "BF16", shape = { 10, 100 }, data = w2 },
          added = { dtype = "F32", shape = { 2 }, data = "abcdefgh" } }
  end)

  it("round-trips tensors and metadata exactly", function()
    local d = delta.compress(a, b, { metadata = { step = "3" } })
    assert.truthy(#d < #b.w.data)
    local out, meta = delta.apply(a, d)
    assert.same(b, out)
    assert.same({ step = "3" }, meta)
  end)

  it("inspect_bytes reports per-tensor changes", function()
    local info = delta.inspect_bytes(delta.compress(a, b))
    assert.equal("flare-delta-v1", info.format)
    assert.equal(delta.format_name, info.format)
    local by = {}
    for _, t in ipairs(info.tensors) do by[t.name] = t end
    assert.equal("modified", by.w.change)
    assert.equal("sparse", by.w.encoding)
    assert.equal(2, by.w.changed)
    assert.equal(0.002, by.w.density)
    assert.same({ 10, 100 }, by.w.shape)
    assert.equal("added", by.added.change)
    assert.equal("removed", by.gone.change)
    assert.equal(delta.adler32(b.w.data), by.w.adler32)
    assert.equal(delta.adler32(a.w.data), by.w.base_adler32)
  end)

  it("refuses the wrong base with a structured error", function()
    local d = delta.compress(a, b)
    local other = { w = { dtype = "BF16", shape = { 10, 100 }, data = poke(a.w.data, 1, 9, 9) },
                    gone = a.gone }
    local ok, err = pcall(delta.apply, other, d)
    assert.falsy(ok)
    assert.equal("base_mismatch", err.code)
    assert.truthy(err.message:find("tensor 'w' chunk 0: base Adler%-32"))
  end)

  it("refuses a corrupted delta", function()
    local d = delta.compress(a, b)
    local bad = d:sub(1, #d - 1) .. string.char((d:byte(#d) + 1) % 256)
    local ok, err = pcall(delta.apply, a, bad)
    assert.falsy(ok)
    assert.equal("invalid_delta", err.code)
    assert.truthy(err.message:find("payload checksum mismatch"))
  end)

  it("names bad arguments", function()
    assert.error_matches(function() delta.compress(a,
      { w = { dtype = "BF16", shape = { 3 }, data = "x" } }) end,
      "tensors_b.w.data has 1 bytes, its shape needs 6")
    assert.error_matches(function() delta.compress(a,
      { w = { dtype = "Q4", shape = {}, data = "" } }) end,
      "tensors_b.w.dtype must name a safetensors dtype")
    assert.error_matches(function() delta.compress(a, b, { levle = 3 }) end,
      "unknown option 'levle'")
  end)
end)

describe("flare.delta files", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("compress_files, inspect, apply_files and verify_files agree", function()
    local w = bytes_of(5000, 2)
    local base = { w = { dtype = "BF16", shape = { 5000 }, data = w } }
    local next = { w = { dtype = "BF16", shape = { 5000 }, data = poke(w, 42, 0, 0) } }
    -- Checkpoints are written through the codec itself: an empty base plus a
    -- delta that adds every tensor gives the file.
    local function write_checkpoint(path, tensors)
      local f = assert(io.open(dir .. "/empty.delta", "wb"))
      f:write(delta.compress({}, tensors))
      f:close()
      local e = assert(io.open(dir .. "/empty.safetensors", "wb"))
      e:write(string.char(8, 0, 0, 0, 0, 0, 0, 0) .. "{}      ")
      e:close()
      delta.apply_files(dir .. "/empty.safetensors", dir .. "/empty.delta", path)
    end
    write_checkpoint(dir .. "/a.safetensors", base)
    write_checkpoint(dir .. "/b.safetensors", next)
    local info = delta.compress_files(dir .. "/a.safetensors", dir .. "/b.safetensors",
      dir .. "/d.delta",
      { level = 3, base_identity = "step-1" })
    assert.equal("step-1", info.base_identity)
    assert.truthy(info.ratio > 20)
    local seen = delta.inspect(dir .. "/d.delta")
    assert.equal(1, seen.tensors[1].changed)
    assert.equal(info.delta_bytes, seen.delta_bytes)
    delta.apply_files(dir .. "/a.safetensors", dir .. "/d.delta", dir .. "/c.safetensors",
      { expect_base_identity = "step-1" })
    assert.equal(read(dir .. "/b.safetensors"), read(dir .. "/c.safetensors"))
    delta.verify_files(dir .. "/a.safetensors", dir .. "/d.delta", dir .. "/b.safetensors")
    assert.error_matches(function()
      delta.apply_files(dir .. "/b.safetensors", dir .. "/d.delta", dir .. "/x.safetensors")
    end, "base Adler%-32")
    assert.falsy(exists(dir .. "/x.safetensors"))
  end)

  it("reports a missing file", function()
    assert.error_matches(function() delta.inspect(dir .. "/nope.delta") end, "cannot open")
  end)
end)
