-- A rock with a C module, built by `luarocks make` into a project's lua_modules against
-- Debian's Lua 5.1 headers, loads in flare and is recorded with its rock.
package.path = (os.getenv("FLARE_SOURCE_DIR") or ".") .. "/tests/rocks/?.lua;" .. package.path
local h = require("rocks_helpers")
local fs = require("flare.fs")

describe("a C module from a rock", function()
  h.require_luarocks()
  local ws = h.workspace()
  local src, proj = ws .. "/flare-cmodule", ws .. "/proj"
  local source_dir = os.getenv("FLARE_SOURCE_DIR") or "."
  h.write(src .. "/flare_test_cmodule.c",
    h.read(source_dir .. "/tests/lua/c_module/flare_test_cmodule.c"))
  h.write(src .. "/flare-cmodule-1.0-1.rockspec", [[
package = "flare-cmodule"
version = "1.0-1"
source = {url = "."}
dependencies = {"lua ~> 5.1"}
build = {type = "builtin", modules = {flare_test_cmodule = "flare_test_cmodule.c"}}
]])

  it("builds with luarocks make, loads with require and is recorded", function()
    fs.mkdir_p(proj)
    -- `luarocks make` builds in the source folder, into the project's tree.
    h.sh(ws, src, "luarocks --lua-version 5.1 --tree " .. h.quote(proj .. "/lua_modules") ..
      " make flare-cmodule-1.0-1.rockspec")
    local so = proj .. "/lua_modules/lib/lua/5.1/flare_test_cmodule.so"
    assert.truthy(fs.exists(so), "luarocks did not install " .. so)
    h.write(proj .. "/add.lua", [[
local m = require("flare_test_cmodule")
local run = flare.recipe{name = "add", config = {}}
print(m.add(2, 3))
local ok, err = pcall(m.fail, "boom")
print(ok, err)
]])
    local _, out = h.sh(ws, proj, "flare run add.lua")
    assert.matches("^5\nfalse\t.*failed inside a C module: boom", out)
    local dirs = h.run_dirs(proj, "add")
    local m = h.config(dirs[#dirs]).modules.flare_test_cmodule
    assert.equal(so, m.path)
    assert.equal("flare-cmodule", m.rock)
    assert.equal("1.0-1", m.version)
    assert.equal(fs.sha256_file(so), m.sha256)
  end)
end)
