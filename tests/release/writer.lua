-- One of the concurrent writers of registry_spec.lua:
--   flare run writer.lua REGISTRY NAME COUNT GO_FILE
-- waits for GO_FILE, then registers COUNT versions of family "conc" and moves each
-- through staging, all in the same registry file as the other writer.
local release = require("flare.release")
local fs = require("flare.fs")
local registry, name, count, go = arg[1], arg[2], tonumber(arg[3]), arg[4]
local deadline = flare.clock() + 30
while not fs.exists(go) do
  if flare.clock() > deadline then error("no go file") end
  flare.sleep(0.005)
end
for i = 1, count do
  local r = release.register{family = "conc", base_model = "tiny-gpt", snapshot = name .. "-" .. i,
    weights_sha256 = fs.sha256(name .. "-" .. i), registry = registry, by = name}
  release.promote(r.id, {reason = name .. " " .. i, force = true, registry = registry, by = name})
  flare.sleep(0.003)  -- leaves the other writer a moment to take the lock
end
print("done " .. name)
