-- Helpers the release specs share.
local fs = require("flare.fs")
local M = {}

-- A fresh empty folder of its own under /tmp.
function M.temp_dir()
  local dir = os.tmpname()
  os.remove(dir)
  fs.mkdir_p(dir)
  return dir
end

-- fn must raise a flare error with this code and a message matching pattern.
-- (A module sees Lua's own assert, not the spec's: its checks raise plain errors.)
function M.expect_error(fn, code, pattern)
  local ok, err = pcall(fn)
  if ok then error("expected an error matching " .. pattern, 2) end
  local got = type(err) == "table" and err.code or "(string) " .. tostring(err)
  if got ~= code then error("expected error code " .. code .. ", got " .. tostring(got), 2) end
  if not tostring(err.message):match(pattern) then
    error("error message " .. tostring(err.message) .. " does not match " .. pattern, 2)
  end
end

return M
