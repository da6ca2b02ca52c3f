-- Writes the README's API section (docs/api.md) from stdlib/flare/repl/api.lua,
-- the same source as the REPL's :help.
--   flare tools/gen_api_docs.lua [docs/api.md]          -- (re)generate
--   flare tools/gen_api_docs.lua --check [docs/api.md]  -- fail when it is stale
local check = arg[1] == "--check"
local path = arg[check and 2 or 1] or "docs/api.md"
local text = require("flare.repl.help").markdown()

if check then
  local f = io.open(path, "rb")
  local current = f and f:read("*a")
  if f then f:close() end
  if current ~= text then
    error(path .. " is out of date with stdlib/flare/repl/api.lua: run `flare tools/gen_api_docs.lua " ..
      path .. "`", 0)
  end
  print(path .. " is up to date")
  return
end
local f = assert(io.open(path, "wb"))
f:write(text)
f:close()
print("wrote " .. path)
