-- flare.repl.api (the source of :help and docs/api.md) names what exists.
local api = require("flare.repl.api")
local help = require("flare.repl.help")

describe("flare.repl.api", function()
  it("documents only flare.* names that exist in this build", function()
    local checked = 0
    for _, section in ipairs(api) do
      for _, entry in ipairs(section.entries) do
        local path = entry[1]:match("^(flare%.[%w_%.]+)")
        if path then
          local top = path:match("^flare%.([%w_]+)")
          local loads = rawget(flare, top) ~= nil or pcall(require, "flare." .. top)
          if loads then
            local v = flare
            for name in path:gmatch("%.([%w_]+)") do v = v[name] end
            assert.not_nil(v, path .. " is documented but missing")
            checked = checked + 1
          end
        end
      end
    end
    assert.truthy(checked >= 10, "checked " .. checked .. " entries")
  end)

  it("gives every entry a call and a one-line doc", function()
    for _, section in ipairs(api) do
      assert.truthy(type(section.title) == "string" and #section.entries > 0)
      for _, entry in ipairs(section.entries) do
        assert.truthy(type(entry[1]) == "string" and type(entry[2]) == "string", section.title)
        assert.falsy(entry[2]:find("\n", 1, true), entry[1] .. ": the doc is one line")
      end
    end
  end)
end)

describe("flare.repl.help", function()
  it("filters by a word in the call, the doc or the section", function()
    local text = help.text("deployments:get")
    assert.matches("fw%.deployments:get%(id%)", text)
    assert.falsy(text:find("flare.sleep", 1, true))
    assert.matches("flare%.report%.term_chart", help.text("Reports"))
    assert.matches("nothing in the API mentions 'zebra'", help.text("zebra"))
  end)

  it("renders the same entries as Markdown", function()
    local md = help.markdown()
    local rows = 0
    for _ in md:gmatch("\n| `") do rows = rows + 1 end
    local entries = 0
    for _, section in ipairs(api) do entries = entries + #section.entries end
    assert.equal(entries, rows)
  end)
end)
