-- flare.repl.pretty: how the prompt shows values.
local pretty = require("flare.repl.pretty")

describe("flare.repl.pretty scalars", function()
  it("prints numbers, booleans and nil as Lua", function()
    assert.equal("42", pretty.format(42))
    assert.equal("-3", pretty.format(-3))
    assert.equal("0.1", pretty.format(0.1))
    assert.equal("1e+20", pretty.format(1e20))
    assert.equal("0/0", pretty.format(0 / 0))
    assert.equal("math.huge", pretty.format(math.huge))
    assert.equal("true", pretty.format(true))
    assert.equal("nil", pretty.format(nil))
  end)

  it("quotes strings with escapes", function()
    assert.equal('"a\\nb\\t\\"q\\"\\\\"', pretty.format('a\nb\t"q"\\'))
    assert.equal('"\\000\\027"', pretty.format("\0\27"))
    assert.equal('"héllo"', pretty.format("héllo"))
  end)

  it("names where a Lua function was defined", function()
    local f = function() end
    assert.matches("^<function .*pretty_spec%.lua:%d+>$", pretty.format(f))
    assert.equal("<builtin function>", pretty.format(print))
  end)
end)

describe("flare.repl.pretty tables", function()
  it("prints short tables on one line: array part, then numeric keys, then names", function()
    assert.equal('{1, 2, "x", [10] = 3, a = 1, b = true, ["two words"] = 2}',
      pretty.format({ 1, 2, "x", b = true, a = 1, [10] = 3, ["two words"] = 2 }))
    assert.equal("{}", pretty.format({}))
    assert.equal('{["end"] = 1}', pretty.format({ ["end"] = 1 }))
  end)

  it("breaks wide tables over indented lines", function()
    local t = { alpha = string.rep("a", 30), beta = string.rep("b", 30), gamma = { 1, 2 } }
    assert.equal('{\n  alpha = "' .. string.rep("a", 30) .. '",\n  beta = "' ..
      string.rep("b", 30) ..
      '",\n  gamma = {1, 2}\n}', pretty.format(t, { width = 60 }))
  end)

  it("stops at the depth limit", function()
    assert.equal("{a = {b = {... 1 item}}}", pretty.format({ a = { b = { c = { d = 1 } } } },
      { max_depth = 2 }))
  end)

  it("stops at the item limit and says how many are left", function()
    local t = {}
    for i = 1, 10 do t[i] = i end
    assert.equal("{1, 2, 3, ... (7 more)}", pretty.format(t, { max_items = 3 }))
  end)

  it("bounds the whole output, not only each table", function()
    local grid = {}
    for i = 1, 30 do
      grid[i] = {}
      for j = 1, 30 do grid[i][j] = j end
    end
    local text = pretty.format(grid, { max_total = 50 })
    local _, numbers = text:gsub("%d+", "")
    assert.truthy(numbers < 80, "about 50 entries shown, got " .. numbers)
    assert.matches("more%)", text)
  end)

  it("marks cycles but prints shared tables each time", function()
    local t = { name = "loop" }
    t.self = t
    assert.equal('{name = "loop", self = <cycle>}', pretty.format(t))
    local shared = { 1 }
    assert.equal("{a = {1}, b = {1}}", pretty.format({ a = shared, b = shared }))
  end)
end)

describe("flare.repl.pretty objects", function()
  it("uses __tostring for one-line summaries, flattening newlines", function()
    local info = setmetatable({}, { __tostring = function()
      return "DeploymentInfo(d1,\n  READY)" end })
    assert.equal("DeploymentInfo(d1, READY)", pretty.format(info))
    assert.equal("{DeploymentInfo(d1, READY)}", pretty.format({ info }))
  end)

  it("summarises a DeploymentInfo table on one line, also inside lists", function()
    local info = { deployment_id = "demo", state = "READY",
      base_model = "accounts/local/models/tiny-gpt",
      inference_model = "accounts/local/deployments/demo", min_replica_count = 0,
        max_replica_count = 1,
      hot_load_bucket_url = "file:///b/" }
    local line = "<DeploymentInfo demo READY base=accounts/local/models/tiny-gpt replicas=0..1>"
    assert.equal(line, pretty.format(info))
    assert.equal("{" .. line .. ", " .. line .. "}", pretty.format({ info, info }, { width = 200 }))
    assert.equal('{deployment_id = "x", state = "READY"}',
      pretty.format({ deployment_id = "x", state = "READY" }))
  end)

  it("prefers __repr to __tostring", function()
    local v = setmetatable({}, { __repr = function() return "repr" end,
      __tostring = function() return "str" end })
    assert.equal("repr", pretty.format(v))
  end)

  it("summarises a __name object by its scalar fields", function()
    local future = setmetatable({ id = 7, state = "running", payload = { 1, 2 } },
      { __name = "Future" })
    assert.equal('<Future id=7 state="running">', pretty.format(future))
    local info = setmetatable({ base_model = "tiny", deployment_id = "d1", state = "READY",
      min_replica_count = 0,
      max_replica_count = 1, zone = "local" }, { __name = "DeploymentInfo" })
    assert.equal('<DeploymentInfo deployment_id="d1" state="READY" base_model="tiny" ' ..
      'max_replica_count=1 ...>',
      pretty.format(info))
    local listed = setmetatable({ a = 1, b = 2, c = 3 },
      { __name = "Pick", __fields = { "c", "a" } })
    assert.equal("<Pick c=3 a=1>", pretty.format(listed))
  end)

  it("survives a failing __tostring", function()
    local bad = setmetatable({ x = 1 }, { __tostring = function() error("boom") end })
    assert.equal("{x = 1}", pretty.format(bad))
  end)

  it("colours only when asked, and colours do not count towards the width", function()
    assert.falsy(pretty.format({ "s", 1 }):find("\27", 1, true))
    local coloured = pretty.format({ "s", 1, true }, { color = true })
    assert.truthy(coloured:find('\27[32m"s"\27[0m', 1, true))
    local t = {}
    for i = 1, 20 do t[i] = i end
    assert.falsy(pretty.format(t, { color = true, width = 80 }):find("\n", 1, true))
  end)

  it("formats several values one per line", function()
    assert.equal('1\n"two"\nnil', pretty.format_values({}, 3, 1, "two", nil))
  end)
end)
