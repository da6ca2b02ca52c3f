-- A compiled Lua C module, loaded through package.cpath as luarocks installs them.
local dir = os.getenv("FLARE_TEST_CMODULE_DIR")

describe("a Lua C module", function()
  it("is built for this test run", function()
    assert.is_true(dir ~= nil and dir ~= "", "FLARE_TEST_CMODULE_DIR is not set")
  end)
  it("loads with require and calls the Lua C API of the flare program", function()
    package.cpath = dir .. "/?.so;" .. package.cpath
    local m = require("flare_test_cmodule")
    assert.equal(5, m.add(2, 3))
    assert.error_matches(function() m.fail("boom") end, "failed inside a C module: boom")
    assert.error_matches(function() m.add("x", 1) end, "bad argument #1")
  end)
end)
