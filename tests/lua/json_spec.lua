-- flare.json: the encoding rules (json_convert.hpp) and its errors on bad input.
local json = flare.json
local ffi = require("ffi")

describe("flare.json.decode", function()
  it("decodes objects, arrays, strings, booleans and null", function()
    local v = json.decode(
      '{"a": [1, 2.5, "x"], "b": true, "c": false, "d": null, "e": "\\u00e9\\n"}')
    assert.same({1, 2.5, "x"}, v.a)
    assert.equal(true, v.b)
    assert.equal(false, v.c)
    assert.equal(json.null, v.d)
    assert.equal("é\n", v.e)
  end)

  it("keeps integers up to 2^53 as Lua numbers", function()
    local v = json.decode("[9007199254740992, -9007199254740992, 0, -1]")
    assert.equal("number", type(v[1]))
    assert.equal(2 ^ 53, v[1])
    assert.equal(-(2 ^ 53), v[2])
  end)

  it("decodes integers beyond 2^53 to exact int64/uint64 cdata", function()
    local v = json.decode(
      "[9007199254740993, -9223372036854775808, 9223372036854775807, 18446744073709551615]")
    assert.truthy(ffi.istype("int64_t", v[1]))
    assert.equal(9007199254740993LL, v[1])
    assert.equal(-9223372036854775807LL - 1, v[2])
    assert.equal(9223372036854775807LL, v[3])
    assert.truthy(ffi.istype("uint64_t", v[4]))
    assert.equal(18446744073709551615ULL, v[4])
  end)

  it("round-trips the int64 and uint64 extremes exactly", function()
    local text = "[-9223372036854775808,9223372036854775807,18446744073709551615,9007199254740993]"
    assert.equal(text, json.encode(json.decode(text)))
  end)

  it("round-trips floats through their shortest text", function()
    for _, x in ipairs({0.1, 1 / 3, 1e-300, 5e-324, 1.7976931348623157e308, -2.5, 0.1 + 0.2}) do
      assert.equal(x, json.decode(json.encode(x)))
    end
    assert.equal("0.1", json.encode(0.1))
    assert.equal("0.30000000000000004", json.encode(0.1 + 0.2))
  end)

  it("keeps the kind of empty arrays and objects so [] and {} round-trip", function()
    assert.equal("[]", json.encode(json.decode("[]")))
    assert.equal("{}", json.encode(json.decode("{}")))
    assert.equal('{"a":{},"b":[]}', json.encode(json.decode('{"a":{},"b":[]}'), {sort_keys = true}))
  end)

  it("raises naming the byte offset of malformed input", function()
    assert.error_matches(function() json.decode("[1, 2,]") end, "invalid JSON at byte offset 6")
    assert.error_matches(function() json.decode('{"a" 1}') end, "invalid JSON at byte offset 5")
    assert.error_matches(function() json.decode("") end, "invalid JSON at byte offset 0")
    assert.error_matches(function() json.decode("[1] x") end, "invalid JSON at byte offset 4")
    assert.error_matches(function() json.decode("tru") end, "invalid JSON at byte offset")
  end)

  it("raises naming the byte offset of invalid UTF-8", function()
    assert.error_matches(function() json.decode('["ok", "a\255b"]') end,
      "invalid JSON at byte offset 9: .*UTF%-8")
    assert.error_matches(function() json.decode('"\192\128"') end, "byte offset 1")
  end)

  it("raises a clear error for nesting deeper than 1000, even 100000 deep", function()
    assert.error_matches(function() json.decode(string.rep("[", 100000)) end,
      "nesting deeper than 1000 at byte offset 1000")
    assert.error_matches(function() json.decode(string.rep('{"a":', 5000) .. "1" ..
      string.rep("}", 5000)) end,
      "nesting deeper than 1000")
    local ok_depth = string.rep("[", 1000) .. string.rep("]", 1000)
    assert.equal(ok_depth, json.encode(json.decode(ok_depth)))
  end)

  it("rejects numbers too large for a double", function()
    assert.error_matches(function() json.decode("1e400") end, "byte offset .*overflow")
  end)

  it("rejects a value that is not a string", function()
    assert.error_matches(function() json.decode(42) end,
      "flare%.json%.decode: argument 'text' must be a string, got number")
    assert.error_matches(function() json.decode() end,
      "argument 'text' must be a string, got no value")
  end)

  it("tells apart short strings that differ in any one byte (the builder's string cache)",
    function()
    local list = {}
    for n = 1, 17 do
      list[#list + 1] = string.rep("a", n)
      for pos = 1, n do
        list[#list + 1] = string.rep("a", pos - 1) .. "b" .. string.rep("a", n - pos)
      end
    end
    local twice = {}
    for _ = 1, 2 do
      for _, v in ipairs(list) do twice[#twice + 1] = v end
    end
    local got = json.decode(json.encode(twice))
    assert.equal(#twice, #got)
    for i, v in ipairs(twice) do assert.equal(v, got[i]) end
  end)
end)

describe("flare.json.parser", function()
  it("is simdjson in this build (libflare-simdjson.so beside the program)", function()
    assert.equal("simdjson", json.parser())
  end)
end)

describe("flare.json.decode_lines", function()
  it("decodes each line that is not blank and returns their line numbers", function()
    local values, lines = json.decode_lines('{"a":1}\n\n  \r\n[1,[]]\n"x"\n')
    assert.equal(3, #values)
    assert.equal(1, values[1].a)
    assert.equal("[1,[]]", json.encode(values[2]))
    assert.equal("x", values[3])
    assert.same({1, 4, 5}, lines)
    assert.same({}, (json.decode_lines("")))
  end)

  it("reads a long file of rows like the per-line decode, big integers included", function()
    local parts = {}
    for i = 1, 2000 do
      parts[i] = json.encode({step = i, loss = 1 / i, tag = "t" .. (i % 7), big = 2 ^ 60 + i})
    end
    local text = table.concat(parts, "\n")
    local values = json.decode_lines(text)
    assert.equal(2000, #values)
    for i = 1, 2000, 137 do assert.same(json.decode(parts[i]), values[i]) end
    assert.equal("t5", values[2000].tag)
  end)

  it("keeps every string in its place among long, short, empty strings and long keys", function()
    -- The builder interns the long strings of a value ahead, 64 at a time: a value with
    -- hundreds of them, between empty and short ones and under long keys, crosses batches.
    local function long(i) return string.rep(string.char(97 + i % 26), 17 + i % 5) .. i end
    local rows, parts = {}, {}
    for r = 1, 3 do
      local items = {}
      for i = 1, 150 do
        local n = r * 1000 + i
        items[#items + 1] = long(n)
        items[#items + 1] = ""
        items[#items + 1] = "s" .. i % 9
        items[#items + 1] = {[long(n + 500) .. "-key"] = long(n + 700), k = ""}
      end
      rows[r] = {id = long(r), items = items, [string.rep("k", 40)] = {long(r + 1), ""}}
      parts[r] = json.encode(rows[r])
    end
    local whole = json.decode(parts[1])
    assert.equal(long(1150), whole.items[597])
    assert.equal("", whole.items[598])
    assert.equal(long(1850), whole.items[600][long(1650) .. "-key"])
    assert.equal(json.encode(rows[1], {sort_keys = true}), json.encode(whole, {sort_keys = true}))
    local values = json.decode_lines(table.concat(parts, "\n"))
    for r = 1, 3 do
      assert.equal(json.encode(rows[r], {sort_keys = true}),
                   json.encode(values[r], {sort_keys = true}))
    end
  end)

  it("keeps values and line numbers in order when the exact parser reads some lines", function()
    -- Lines are parsed ahead in batches; simdjson refuses integers beyond 64 bits, so
    -- those lines end a batch and are read by the exact parser (as doubles).
    local function long(i) return "row " .. i .. " " .. string.rep("x", 20 + i % 13) end
    local text, want_lines = {}, {}
    for i = 1, 60 do
      if i % 5 == 0 then text[#text + 1] = "  " end
      if i % 7 == 0 then
        text[#text + 1] = '{"big": 1180591620717411303424, "t": "' .. long(i) .. '"}'
      else
        text[#text + 1] = '{"t": "' .. long(i) .. '", "i": ' .. i .. '}'
      end
      want_lines[i] = #text
    end
    local values, lines = json.decode_lines(table.concat(text, "\n"))
    assert.equal(60, #values)
    assert.same(want_lines, lines)
    for i = 1, 60 do
      assert.equal(long(i), values[i].t)
      if i % 7 == 0 then
        assert.equal(2 ^ 70, values[i].big)
      else
        assert.equal(i, values[i].i)
      end
    end
  end)

  it("keeps a result that outgrows the heap whole; garbage from before is collected", function()
    local finalized = false
    do
      local p = newproxy(true)
      getmetatable(p).__gc = function() finalized = true end
    end
    local heap = collectgarbage("count") * 1024
    local row = '{"text": "' .. string.rep("w ", 40) .. '", "n": [1, 2.5, null]}\n'
    local text = string.rep(row, math.ceil(heap / #row) + 1000)
    local values = json.decode_lines(text)
    assert.is_true(finalized)
    assert.equal(#text / #row, #values)
    assert.same(json.decode(row), values[#values])
  end)

  it("names the source, the line and the byte offset in the whole text", function()
    assert.error_matches(function()
      json.decode_lines('{"a":1}\n{"a" 1}\n', {source = "data.jsonl"})
    end, "^data%.jsonl line 2: invalid JSON at byte offset 13: ")
    assert.error_matches(function() json.decode_lines('[1]\n"a\255"') end,
      "flare%.json%.decode_lines line 2: invalid JSON at byte offset 6: .*UTF%-8")
    assert.error_matches(function()
      json.decode_lines("[]\n" .. string.rep("[", 1200))
    end, "line 2: nesting deeper than 1000 at byte offset 1003")
    -- Past the first batch of lines parsed ahead: a line simdjson refuses, and one it
    -- reads (1010 deep) that the builder refuses.
    local rows = string.rep('{"a": [1, "two"]}\n', 20)
    assert.error_matches(function()
      json.decode_lines(rows .. '{"a": [1, "two"]}\n{"a" 1}\n' .. rows, {source = "d.jsonl"})
    end, "^d%.jsonl line 22: invalid JSON at byte offset " .. (#rows + 18 + 5) .. ": ")
    assert.error_matches(function()
      json.decode_lines(rows .. string.rep("[", 1010) .. string.rep("]", 1010) .. "\n" .. rows)
    end, "line 21: nesting deeper than 1000 at byte offset " .. (#rows + 1000) .. "$")
    assert.error_matches(function() json.decode_lines({}) end,
      "argument 'text' must be a string")
    assert.error_matches(function() json.decode_lines("", {sorce = "x"}) end,
      "unknown option 'sorce'")
  end)
end)

describe("flare.json.encode", function()
  it("writes integral numbers inside int64 as integers", function()
    assert.equal("3", json.encode(3))
    assert.equal("-7", json.encode(-7.0))
    assert.equal("4611686018427387904", json.encode(2 ^ 62))
    assert.equal("-9223372036854775808", json.encode(-(2 ^ 63)))
    assert.equal("1e+19", json.encode(1e19))
    assert.equal("1.5", json.encode(1.5))
  end)

  it("writes int64 and uint64 cdata as integers", function()
    assert.equal("[-5,18446744073709551615]", json.encode({-5LL, 18446744073709551615ULL}))
  end)

  it("encodes a plain empty table as [] and the marked ones as marked", function()
    assert.equal("[]", json.encode({}))
    assert.equal("[]", json.encode(json.array{}))
    assert.equal("{}", json.encode(json.object{}))
    assert.equal("{}", json.encode(json.object()))
    assert.equal('{"a":1}', json.encode(json.object{a = 1}))
    assert.equal('{"1":"x","2":"y"}', json.encode(json.object{"x", "y"}, {sort_keys = true}))
  end)

  it("encodes null, booleans and escaped strings", function()
    assert.equal('[null,true,false,"q\\"b\\\\n\\n\\t\\u0001/é"]',
      json.encode({json.null, true, false, 'q"b\\n\n\t\1/é'}))
    assert.equal("null", json.encode(nil))
  end)

  it("sorts keys and pretty-prints on request", function()
    local v = {b = {1, 2}, a = json.object{}, c = {x = json.array{}}}
    assert.equal('{"a":{},"b":[1,2],"c":{"x":[]}}', json.encode(v, {sort_keys = true}))
    assert.equal('{\n  "a": {},\n  "b": [\n    1,\n    2\n  ],\n  "c": {\n    "x": []\n  }\n}',
      json.encode(v, {sort_keys = true, pretty = true}))
  end)

  it("round-trips a nested document", function()
    local doc = {id = "cmpl-1", choices = {{index = 0, text = "hi", logprobs = {tokens = {"h", "i"},
      token_logprobs = {-0.25, -1.5e-3}}}}, usage = {prompt_tokens = 3}}
    assert.same(doc, json.decode(json.encode(doc)))
  end)

  it("raises on a cycle instead of crashing", function()
    local t = {}
    t.self = t
    assert.error_matches(function() json.encode({x = t}) end, "cycle.* at %$%.x%.self")
    local a = {}
    a[1] = a
    assert.error_matches(function() json.encode(a) end, "cycle")
  end)

  it("allows the same table twice when it is not a cycle", function()
    local shared = {1}
    assert.equal("[[1],[1]]", json.encode({shared, shared}))
  end)

  it("raises naming the path of NaN and infinities", function()
    assert.error_matches(function() json.encode({a = {b = 0 / 0}}) end, "NaN at %$%.a%.b")
    assert.error_matches(function() json.encode({1, 2, 1 / 0}) end, "inf at %$%[3%]")
    assert.error_matches(function() json.encode({x = {["odd key"] = -1 / 0}}) end,
      '%-inf at %$%.x%["odd key"%]')
  end)

  it("raises on sparse arrays, mixed keys and values JSON cannot hold", function()
    assert.error_matches(function() json.encode({1, nil, 3}) end,
      "sparse array %(keys are not 1%.%.n%) at %$")
    assert.error_matches(function() json.encode({1, a = 2}) end, "mixed or non%-string keys at %$")
    assert.error_matches(function() json.encode({f = print}) end,
      "cannot encode a function at %$%.f")
    assert.error_matches(function() json.encode({[true] = 1}) end, "non%-string keys")
    assert.error_matches(function() json.encode(json.array{a = 1}) end, "marked as an array")
  end)

  it("raises on invalid UTF-8 in strings and keys", function()
    assert.error_matches(function() json.encode({"ok", "bad\255"}) end,
      "invalid UTF%-8 in string %(byte 3%) at %$%[2%]")
    assert.error_matches(function() json.encode({["k\192"] = 1}) end, "invalid UTF%-8 in key")
  end)

  it("raises on nesting deeper than 1000", function()
    local deep = {}
    local t = deep
    for _ = 1, 1200 do
      t[1] = {}
      t = t[1]
    end
    assert.error_matches(function() json.encode(deep) end, "nesting deeper than 1000")
  end)

  it("rejects unknown options and wrong option types by name", function()
    assert.error_matches(function() json.encode({}, {prety = true}) end, "unknown option 'prety'")
    assert.error_matches(function() json.encode({}, {pretty = 1}) end,
      "option 'pretty' must be a boolean")
  end)
end)

describe("flare.json.array and flare.json.object", function()
  it("return the table they mark, or a new one", function()
    local t = {1, 2}
    assert.equal(t, json.array(t))
    assert.equal("table", type(json.object()))
  end)

  it("refuse a table that has another metatable", function()
    local t = setmetatable({}, {})
    assert.error_matches(function() json.array(t) end, "already has a metatable")
    assert.error_matches(function() json.object(5) end,
      "flare%.json%.object: argument 't' must be a table, got number")
  end)
end)
