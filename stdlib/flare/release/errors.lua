-- flare.release.errors: the structured errors every release function raises.
local args = require("flare.args")

local M = {}

function M.invalid(who, message) args.invalid(who, message) end

function M.not_found(message) flare.error{code = "not_found", message = message} end

-- A change the registry's state does not allow (a version from another base, a
-- promotion from the wrong stage, results of another suite).
function M.refused(message) flare.error{code = "failed_precondition", message = message} end

-- " (did you mean X?)" when a candidate is close to name, else "".
function M.suggest(name, candidates)
  local best = args.did_you_mean(tostring(name), candidates)
  return best and (" (did you mean '" .. best .. "'?)") or ""
end

return M
