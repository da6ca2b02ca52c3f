-- luarocks.lock as `flare run` reads it (format of `luarocks build --pin`): a warning per
-- pinned rock whose installed version differs or which no tree has, one for a lock that
-- cannot be read, none when everything matches. The tree is written by hand here, in the
-- layout and manifest format luarocks writes (team_server_spec.lua uses luarocks itself).
package.path = (os.getenv("FLARE_SOURCE_DIR") or ".") .. "/tests/rocks/?.lua;" .. package.path
local h = require("rocks_helpers")

local MANIFEST = [[
commands = {}
dependencies = {}
modules = {
   flare_evals = {
      "flare-evals/1.1-1"
   }
}
repository = {
   ["flare-evals"] = {
      ["1.1-1"] = {
         {
            arch = "installed",
            commands = {},
            dependencies = {},
            modules = {
               flare_evals = "flare_evals.lua"
            }
         }
      }
   }
}
]]

describe("luarocks.lock", function()
  local ws = h.workspace()
  local proj = ws .. "/proj"
  local tree = proj .. "/lua_modules"
  h.write(tree .. "/lib/luarocks/rocks-5.1/manifest", MANIFEST)
  h.write(tree .. "/share/lua/5.1/flare_evals.lua", 'return {version = "1.1"}\n')
  h.write(proj .. "/main.lua", 'print(require("flare_evals").version)\n')

  local function run_with_lock(lock)
    h.write(proj .. "/luarocks.lock", lock)
    local _, out, err = h.sh(ws, proj, "flare run main.lua")
    assert.equal("1.1\n", out)
    return err
  end

  it("is quiet when the installed versions are the pinned ones", function()
    assert.equal("", run_with_lock(
      'return {dependencies = {["flare-evals"] = "1.1-1", lua = "5.1-1"}}\n'))
  end)

  it("warns for a pinned rock of another version or not installed", function()
    local err = run_with_lock(
      'return {dependencies = {["flare-evals"] = "1.0-1", ["reward-kit"] = "2.0-1"}}\n')
    assert.matches("^flare: warning: luarocks%.lock pins flare%-evals 1%.0%-1, but 1%.1%-1 is " ..
      "installed %(" .. tree:gsub("%p", "%%%0") .. "%)\n", err)
    assert.matches("\nflare: warning: luarocks%.lock pins reward%-kit 2%.0%-1, which is not " ..
      "installed in any tree\n$", err)
  end)

  it("warns once for a lock it cannot read and runs the script", function()
    local err = run_with_lock("return {dependencies = \n")
    assert.matches("^flare: warning: luarocks%.lock: cannot read the lock %(", err)
    err = run_with_lock(string.dump(function() return {} end))
    assert.matches("precompiled chunk, not Lua source", err)
  end)
end)
