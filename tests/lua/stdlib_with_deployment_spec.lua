-- Argument checks of flare.with_deployment; its behaviour against the emulator
-- (release on normal end, error, SIGINT, SIGTERM; scale back up) is covered by
-- the recipe tests in tests/recipes/.
describe("flare.with_deployment", function()
  it("names what is missing or wrong before any remote call", function()
    assert.error_matches(function() flare.with_deployment(nil, function() end) end,
      "argument 'config' must be a table, got nil")
    assert.error_matches(function() flare.with_deployment({}, function() end) end,
      "config%.deployment_id")
    assert.error_matches(function() flare.with_deployment({deployment_id = "x"}) end,
      "argument 'fn' must be a function, got nil")
    assert.error_matches(function()
      flare.with_deployment({deployment_id = "x"}, function() end, {on_exit = "stop"})
    end, 'option \'on_exit\' must be "scale_to_zero", "delete" or "keep", got stop')
    assert.equal(0, require("flare.cleanup").pending())
  end)
end)
