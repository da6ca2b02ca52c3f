-- Helpers the Lua specs share.
local fs = require("flare.fs")
local M = {}

-- Runs fn with io.stdout sent to /dev/null (run:log prints a line per call; keeps spec output
-- readable) and raises fn's error, if any, after stdout is back.
function M.quiet(fn)
  local real, sink = io.stdout, io.open("/dev/null", "w")
  io.stdout = sink  -- luacheck: ignore 122
  local ok, err = pcall(fn)
  io.stdout = real  -- luacheck: ignore 122
  sink:close()
  if not ok then error(err, 0) end
end

-- A path under /tmp no other process or spec uses: /tmp/flare-<name>-spec-<pid>-<microseconds>.
function M.temp_path(name)
  return "/tmp/flare-" .. name .. "-spec-" .. fs.getpid() .. "-" .. math.floor(flare.clock() * 1e6)
end

return M
