-- `flare new module NAME`: a module folder that `flare test`, `luarocks lint`,
-- `luarocks make`, `luarocks pack` and `luarocks test` take as it is, and whose module
-- refuses to load on another flare API than the one it was written for.
package.path = (os.getenv("FLARE_SOURCE_DIR") or ".") .. "/tests/rocks/?.lua;" .. package.path
local h = require("rocks_helpers")
local fs = require("flare.fs")

describe("flare new module", function()
  h.require_luarocks()
  local ws = h.workspace()
  local dir = ws .. "/reward-verifier"

  it("writes the rockspec, the module, its spec, a README and a .gitignore", function()
    local _, out = h.sh(ws, ws, "flare new module reward-verifier")
    for _, f in ipairs({"reward-verifier-0.1-1.rockspec", "reward_verifier.lua",
      "reward_verifier_spec.lua", "README.md", ".gitignore"}) do
      assert.truthy(fs.exists(dir .. "/" .. f), f .. " is missing")
      assert.matches("created reward%-verifier/" .. f:gsub("%p", "%%%0"), out)
    end
    local rockspec = h.read(dir .. "/reward-verifier-0.1-1.rockspec")
    assert.matches('labels = {"flare", "flare%-api%-' .. flare.api_version .. '"}', rockspec)
    local readme = h.read(dir .. "/README.md")
    assert.matches('require%("reward_verifier"%)', readme)
    assert.matches("luarocks%-admin %-%-lua%-version 5%.1 make%-manifest", readme)
  end)

  it("has a spec that flare test runs and passes", function()
    local _, out = h.sh(ws, dir, "flare test reward_verifier_spec.lua")
    assert.matches("2 passed, 0 failed", out)
  end)

  it("is accepted by luarocks lint, make, pack and test as it is", function()
    h.sh(ws, dir, "luarocks --lua-version 5.1 lint reward-verifier-0.1-1.rockspec")
    h.sh(ws, dir, "luarocks --lua-version 5.1 make --tree build/rocks")
    assert.truthy(fs.exists(dir .. "/build/rocks/share/lua/5.1/reward_verifier.lua"))
    h.sh(ws, dir, "luarocks --lua-version 5.1 --tree build/rocks pack reward-verifier 0.1-1")
    assert.truthy(fs.exists(dir .. "/reward-verifier-0.1-1.all.rock"))
    local _, out = h.sh(ws, dir, "luarocks --lua-version 5.1 test")
    assert.matches("2 passed, 0 failed", out)
  end)

  it("checks flare.api_version when it is required", function()
    local _, out = h.sh(ws, dir, "flare -e 'print(require(\"reward_verifier\").version)'")
    assert.equal("0.1\n", out)
    local status, _, err = h.sh(ws, dir,
      "flare -e 'flare.api_version = flare.api_version + 1; require(\"reward_verifier\")'", 1)
    assert.equal(1, status)
    assert.matches("reward%-verifier needs flare API " .. flare.api_version ..
      ", this is flare API " .. (flare.api_version + 1), err)
  end)

  it("refuses a name that is not a rock name and a folder that exists", function()
    local status, _, err = h.sh(ws, ws, "flare new module Bad/Name", 1)
    assert.equal(1, status)
    assert.matches("NAME 'Bad/Name' must be a rock name", err)
    _, _, err = h.sh(ws, ws, "flare new module reward-verifier", 1)
    assert.matches("reward%-verifier already exists", err)
    _, _, err = h.sh(ws, ws, "flare new widget x", 2)
    assert.matches("unknown kind 'widget'", err)
    h.sh(ws, ws, "flare new module other --dir elsewhere")
    assert.truthy(fs.exists(ws .. "/elsewhere/other.lua"))
  end)
end)
