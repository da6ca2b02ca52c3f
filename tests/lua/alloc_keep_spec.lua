-- LuaJIT's allocator as dev.sh builds it (tools/luajit/alloc-keep.patch): freed memory stays
-- mapped for reuse, up to 128 MB in the top segment and 128 MB in free segments.

local function minor_faults()
  local stat = assert(flare.fs.read_file("/proc/self/stat"))
  local fields = {}
  for w in stat:match("%) (.*)"):gmatch("%S+") do fields[#fields + 1] = w end
  return tonumber(fields[8])
end

-- About 30 MB of data-set rows, each with its own text.
local function dataset(rows)
  local lines, words = {}, {}
  for i = 1, rows do
    for w = 1, 40 do words[w] = string.format("w%x", (i * 7919 + w * 104729) % 1000003) end
    lines[i] = flare.json.encode({ id = "ex-" .. i, messages = {
      { role = "user", content = table.concat(words, " ", 1, 20) },
      { role = "assistant", content = table.concat(words, " ") },
    } })
  end
  return table.concat(lines, "\n")
end

describe("the Lua allocator", function()
  it("reuses the memory of a decoded data set for the next decode without faulting it in",
     function()
    local text = dataset(60000)
    collectgarbage()
    collectgarbage()
    local kb0 = collectgarbage("count")
    local rows = flare.json.decode_lines(text)
    local pages = (collectgarbage("count") - kb0) / 4
    assert.equal(60000, #rows)
    rows = nil -- luacheck: ignore 311
    collectgarbage()
    collectgarbage()
    local f0 = minor_faults()
    rows = flare.json.decode_lines(text)
    local faults = minor_faults() - f0
    assert.equal("ex-60000", rows[60000].id)
    -- LuaJIT's own allocator gives much of it back: the second decode faulted in about a third
    -- of the pages the rows take (4,608 of 13,187).
    assert.is_true(pages > 10000, ("the rows take %d pages"):format(pages))
    assert.is_true(faults * 10 < pages,
      ("%d page faults in the second decode, for rows that take %d pages"):format(faults, pages))
  end)
end)
