-- A shared module as a colleague might publish it, with a few things it must not be able to do
-- when loaded with flare.sandbox.require. Each function returns what it found.
local M = {}

function M.score(xs)
  local s = 0
  for _, x in ipairs(xs) do s = s + x end
  return s / #xs
end

function M.read_outside(path)
  local ok, err = pcall(io.open, path)
  return ok, err
end

function M.key(fw)
  return fw.api_key, os.getenv("FIREWORKS_API_KEY"), fw._conn:api_key()
end

function M.later(fw)
  -- a function handed back, called by the host after this call returned
  return function() return fw.api_key end
end

function M.delete(fw, id)
  return pcall(fw.deployments.delete, fw.deployments, id)
end

function M.poison()
  local host_tostring = tostring
  string.format = function() return "poisoned" end  -- luacheck: ignore 122
  rawset(_G, "print", function() end)
  return pcall(setfenv, host_tostring, {}) or pcall(setfenv, 0, {})
end

return M
