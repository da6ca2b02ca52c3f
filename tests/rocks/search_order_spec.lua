-- Where `require` looks: the script's folder, the project's lua_modules, the user tree
-- (~/.luarocks), the system tree (/usr/local), FLARE_PATH, the stdlib; `flare version`
-- lists the same places; config.json's `modules` records what a run loaded from them.
package.path = (os.getenv("FLARE_SOURCE_DIR") or ".") .. "/tests/rocks/?.lua;" .. package.path
local h = require("rocks_helpers")
local fs = require("flare.fs")

local function module_file(value)
  return "return {who = " .. string.format("%q", value) .. "}\n"
end

describe("require's search order", function()
  local ws = h.workspace()
  local proj, shared = ws .. "/proj", ws .. "/shared"
  local user_lua = ws .. "/home/.luarocks/share/lua/5.1"
  local env = {FLARE_PATH = shared}
  h.write(proj .. "/lua_modules/share/lua/5.1/shadow.lua", module_file("project"))
  h.write(user_lua .. "/shadow.lua", module_file("user"))
  h.write(shared .. "/shadow.lua", module_file("FLARE_PATH"))
  h.write(shared .. "/flare/verify.lua", module_file("FLARE_PATH"))
  h.write(proj .. "/scripts/which.lua",
    "print(require('shadow').who, require('flare.verify').who or 'stdlib')\n")

  local function which()
    local _, out = h.sh(ws, proj, "flare run scripts/which.lua", 0, env)
    return out
  end

  it("goes project, user, FLARE_PATH, stdlib", function()
    assert.equal("project\tFLARE_PATH\n", which())
    fs.remove(proj .. "/lua_modules/share/lua/5.1/shadow.lua")
    assert.equal("user\tFLARE_PATH\n", which())
    fs.remove(user_lua .. "/shadow.lua")
    fs.remove(shared .. "/flare/verify.lua")
    assert.equal("FLARE_PATH\tstdlib\n", which())
  end)

  it("puts the script's folder first and the system tree between the user tree and FLARE_PATH",
    function()
      h.write(proj .. "/scripts/paths.lua", "print(package.path) print(package.cpath)\n")
      local _, out = h.sh(ws, proj, "flare run scripts/paths.lua", 0, env)
      local path, cpath = out:match("^([^\n]*)\n([^\n]*)\n$")
      local function at(s, entry)
        return assert(s:find(entry, 1, true), entry .. " is not in " .. s)
      end
      assert.equal(1, at(path, "scripts/?.lua;"))
      local order = {proj .. "/lua_modules/share/lua/5.1/?.lua", user_lua .. "/?.lua",
        "/usr/local/share/lua/5.1/?.lua", shared .. "/?.lua", "/stdlib/?.lua"}
      for i = 2, #order do
        assert.truthy(at(path, order[i - 1]) < at(path, order[i]), order[i - 1] .. " before " ..
          order[i])
      end
      local corder = {proj .. "/lua_modules/lib/lua/5.1/?.so",
        ws .. "/home/.luarocks/lib/lua/5.1/?.so", "/usr/local/lib/lua/5.1/?.so"}
      assert.equal(1, at(cpath, corder[1]))
      for i = 2, #corder do assert.truthy(at(cpath, corder[i - 1]) < at(cpath, corder[i])) end
    end)

  it("is what `flare version` lists", function()
    local _, out = h.sh(ws, proj, "flare version", 0, env)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    local from
    for i, l in ipairs(lines) do if l:match("^require searches") then from = i end end
    assert.truthy(from, out)
    assert.matches("^  the script's folder$", lines[from + 1])
    assert.matches("^  project +" .. (proj .. "/lua_modules"):gsub("%p", "%%%0") .. "$",
      lines[from + 2])
    assert.matches("^  user +" .. (ws .. "/home/.luarocks"):gsub("%p", "%%%0") .. "$",
      lines[from + 3])
    assert.matches("^  system +/usr/local", lines[from + 4])
    assert.matches("^  FLARE_PATH +" .. shared:gsub("%p", "%%%0") .. "$", lines[from + 5])
    assert.matches("^  stdlib +/.*stdlib$", lines[from + 6])
    local _, bare = h.sh(ws, ws, "flare version", 0)
    assert.matches("project +" .. (ws .. "/lua_modules"):gsub("%p", "%%%0") .. " %(absent%)",
      bare)
  end)

  it("records the modules a run loaded, those required after flare.recipe{} too", function()
    h.write(proj .. "/lua_modules/share/lua/5.1/shadow.lua", module_file("project"))
    h.write(proj .. "/scripts/helper.lua", "return {}\n")
    h.write(proj .. "/scripts/record.lua", [[
local helper = require("helper")
local run = flare.recipe{name = "record", config = {}}
local shadow = require("shadow")
run:log{step = 1, who = shadow.who}
]])
    h.sh(ws, proj, "flare run scripts/record.lua", 0, env)
    local dirs = h.run_dirs(proj, "record")
    local modules = h.config(dirs[#dirs]).modules
    local names = {}
    for name in pairs(modules) do names[#names + 1] = name end
    table.sort(names)
    assert.same({"helper", "shadow"}, names)  -- no stdlib module
    assert.equal(proj .. "/scripts/helper.lua", modules.helper.path)
    assert.equal(fs.sha256_file(proj .. "/scripts/helper.lua"), modules.helper.sha256)
    assert.equal(proj .. "/lua_modules/share/lua/5.1/shadow.lua", modules.shadow.path)
    assert.is_nil(modules.shadow.rock)  -- a file put there by hand, not by luarocks
  end)
end)
