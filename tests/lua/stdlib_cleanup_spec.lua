-- In-process behaviour of flare.cleanup; the subprocess runs that check the
-- host contract (error, SIGINT, SIGTERM) are in stdlib_cleanup_process_spec.lua.
local cleanup = require("flare.cleanup")

describe("flare.cleanup", function()
  it("runs cleanups last-in first-out, each once, with the reason", function()
    local order = {}
    cleanup.defer(function(r) order[#order + 1] = "a:" .. r end)
    flare.defer(function(r) order[#order + 1] = "b:" .. r end)
    assert.equal(2, cleanup.pending())
    assert.equal(0, cleanup.run_all("exit"))
    assert.same({"b:exit", "a:exit"}, order)
    assert.equal(0, cleanup.run_all("exit"))
    assert.same({"b:exit", "a:exit"}, order)
  end)

  it("skips cancelled cleanups", function()
    local ran = {}
    cleanup.defer(function() ran[#ran + 1] = 1 end)
    local h = cleanup.defer(function() ran[#ran + 1] = 2 end)
    h:cancel()
    assert.equal(1, cleanup.pending())
    cleanup.run_all("exit")
    assert.same({1}, ran)
  end)

  it("counts failures and keeps going after an error", function()
    local ran = {}
    cleanup.defer(function() ran[#ran + 1] = "first" end)
    cleanup.defer(function() error("boom") end, "exploding")
    cleanup.defer(function() flare.error{code = "x", message = "structured"} end)
    cleanup.defer(function() ran[#ran + 1] = "last" end)
    assert.equal(2, cleanup.run_all("error"))
    assert.same({"last", "first"}, ran)
  end)

  it("runs cleanups deferred by a cleanup", function()
    local ran = {}
    cleanup.defer(function()
      ran[#ran + 1] = "outer"
      cleanup.defer(function() ran[#ran + 1] = "inner" end)
    end)
    cleanup.run_all("exit")
    assert.same({"outer", "inner"}, ran)
  end)

  it("rejects what is not a function", function()
    assert.error_matches(function() cleanup.defer(42) end,
      "flare%.cleanup%.defer: argument 'fn' must be a function or a table, got number")
    assert.error_matches(function() cleanup.defer({}) end,
      "argument 'fn' must be a function, got table")
  end)
end)
