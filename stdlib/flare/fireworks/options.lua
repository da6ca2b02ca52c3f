-- flare.fireworks.options: option checking shared by the client modules.
--   check(opts, spec, who) validates a table of options against spec
--   {name = "string" | "number" | "integer" | "boolean" | "table" | "string|table" | ...};
--   an unknown name raises with a did-you-mean, a wrong type names the option.
--   raise(code, message, fields) raises a structured error.
local M = {}

function M.raise(code, message, fields)
  local e = {code = code, message = message}
  for k, v in pairs(fields or {}) do e[k] = v end
  flare.error(e)
end

-- The checks are the bindings' own (flare.args), so a misuse raises the same
-- {code = "invalid_argument"} error from Lua as from C++.
local args = require("flare.args")
M.did_you_mean = args.did_you_mean
M.check = args.options

-- n random hex digits from /dev/urandom (math.random is not seeded per process).
function M.random_hex(n)
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(math.ceil(n / 2))
  if f then f:close() end
  if not bytes then
    math.randomseed(os.time() + math.floor(flare.clock() * 1e6))
    local t = {}
    for i = 1, n do t[i] = string.format("%x", math.random(0, 15)) end
    return table.concat(t)
  end
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end)):sub(1, n)
end

return M
