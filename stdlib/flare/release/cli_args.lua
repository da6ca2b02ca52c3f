-- flare.release.cli_args: the argument parsing of `flare release` and `flare traffic`.
local errors = require("flare.release.errors")

local M = {}

-- Splits args into positionals and --flags (each flag of `spec`: "value" or "bool");
-- usage(message) raises the command's usage error.
function M.parse(args, spec, command, usage)
  local pos, flags = {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a:sub(1, 2) == "--" then
      local key, value = a:match("^%-%-([^=]+)=(.*)$")
      key = key or a:sub(3)
      local kind = spec[key]
      if not kind then
        local names = {}
        for k in pairs(spec) do names[#names + 1] = k end
        usage(command .. ": unknown option --" .. key .. errors.suggest(key, names))
      end
      if kind == "bool" then
        flags[key] = true
      else
        if value == nil then
          i = i + 1
          value = args[i]
          if value == nil then usage(command .. ": --" .. key .. " needs a value") end
        end
        flags[key] = value
      end
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return pos, flags
end

return M
