-- A team's rocks server end to end: `flare new module flare-evals`, versions 1.0 and 1.1
-- published to a folder maintained with `luarocks-admin make-manifest`, 1.0 installed into
-- another project's lua_modules, a recipe run, an upgrade to 1.1 from the same folder served
-- over HTTP, and each run's config.json naming the version the recipe printed. Then the
-- luarocks.lock pin and `flare run --replay` on the same project.
package.path = (os.getenv("FLARE_SOURCE_DIR") or ".") .. "/tests/rocks/?.lua;" .. package.path
local h = require("rocks_helpers")
local fs = require("flare.fs")
local proc = require("flare.proc")

local RECIPE = [[
local evals = require("flare_evals")
local run = flare.recipe{name = "eval", config = {problems = 4}}
local task = flare.tasks.get("addition", {seed = 1})
local problems = task:sample(run.config.problems)
local groups = {}
for i, p in ipairs(problems) do groups[i] = {{text = tostring(p.answer)}, {text = "?"}} end
print("flare-evals " .. evals.version)
run:log{step = 1, pass_rate = evals.pass_rate(task, problems, groups)}
]]

-- Serves dir over HTTP on an ephemeral loopback port; returns the URL.
local function serve_http(ws, dir)
  local port_file = ws .. "/http.port"
  local child = proc.spawn{argv = {"python3", "-c", [[
import functools, http.server, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
open(sys.argv[2] + ".tmp", "w").write(str(server.server_address[1]))
__import__("os").rename(sys.argv[2] + ".tmp", sys.argv[2])
server.serve_forever()
]], dir, port_file}}
  flare.defer(function() child:kill("KILL"); child:wait{} end, "stop the HTTP server")
  local deadline = flare.clock() + 30
  while not fs.exists(port_file) do
    assert(flare.clock() < deadline, "the HTTP server did not start")
    flare.sleep(0.05)
  end
  return "http://127.0.0.1:" .. h.read(port_file)
end

local function run_recipe(ws, proj, expect_status)
  local before = #h.run_dirs(proj, "eval")
  local status, out, err = h.sh(ws, proj, "flare run eval.lua", expect_status)
  local dirs = h.run_dirs(proj, "eval")
  return dirs[#dirs] ~= nil and #dirs > before and dirs[#dirs] or nil, out, err, status
end

local function installed_file(proj)
  return proj .. "/lua_modules/share/lua/5.1/flare_evals.lua"
end

describe("a team's rocks server", function()
  h.require_luarocks()
  local ws = h.workspace()
  local src, server, proj = ws .. "/src/flare-evals", ws .. "/rocks", ws .. "/proj"
  local runs = {}
  local LR = "luarocks --lua-version 5.1 --tree lua_modules "

  it("publishes flare-evals 1.0 and 1.1 to a folder with luarocks-admin make-manifest", function()
    h.sh(ws, ws, "mkdir -p src && cd src && flare new module flare-evals")
    h.publish(ws, src, "flare-evals", "1.0", server)
    h.publish(ws, src, "flare-evals", "1.1", server)
    local manifest = h.read(server .. "/manifest-5.1")
    assert.matches('%["1%.0%-1"%]', manifest)
    assert.matches('%["1%.1%-1"%]', manifest)
    assert.truthy(fs.exists(server .. "/flare-evals-1.0-1.all.rock"))
    assert.truthy(fs.exists(server .. "/flare-evals-1.1-1.all.rock"))
  end)

  it("installs 1.0 into another project's lua_modules and the run records 1.0", function()
    h.write(proj .. "/eval.lua", RECIPE)
    h.sh(ws, proj, LR .. "install --only-server=" .. h.quote(server) .. " flare-evals 1.0")
    local dir, out, err = run_recipe(ws, proj)
    assert.matches("flare%-evals 1%.0\n", out)
    assert.falsy(err:find("warning"), err)
    local m = h.config(dir).modules.flare_evals
    assert.equal("flare-evals", m.rock)
    assert.equal("1.0-1", m.version)
    assert.equal(installed_file(proj), m.path)
    assert.equal(fs.sha256_file(installed_file(proj)), m.sha256)
    runs.v10 = dir
  end)

  it("upgrades to 1.1 from the same server over HTTP and the next run records 1.1", function()
    local url = serve_http(ws, server)
    h.sh(ws, proj, LR .. "install --only-server=" .. url .. " flare-evals 1.1")
    local dir, out = run_recipe(ws, proj)
    assert.matches("flare%-evals 1%.1\n", out)
    local m = h.config(dir).modules.flare_evals
    assert.equal("1.1-1", m.version)
    assert.equal(fs.sha256_file(installed_file(proj)), m.sha256)
    -- The earlier run keeps its own record.
    assert.equal("1.0-1", h.config(runs.v10).modules.flare_evals.version)
    assert.truthy(h.config(runs.v10).modules.flare_evals.sha256 ~= m.sha256)
    runs.v11 = dir
  end)

  it("warns when luarocks.lock pins another version than the one installed", function()
    h.write(proj .. "/proj-dev-1.rockspec", [[
package = "proj"
version = "dev-1"
source = {url = "."}
dependencies = {"flare-evals == 1.0"}
build = {type = "builtin", modules = {}}
]])
    -- `luarocks make --pin` installs the pinned dependency and writes the lock.
    h.sh(ws, proj, LR .. "make --only-deps --pin --only-server=" .. h.quote(server) ..
      " proj-dev-1.rockspec")
    assert.matches('%["flare%-evals"%] = "1%.0%-1"', h.read(proj .. "/luarocks.lock"))
    local _, out, err = run_recipe(ws, proj)
    assert.matches("flare%-evals 1%.0\n", out)
    assert.falsy(err:find("luarocks.lock", 1, true), err)

    h.sh(ws, proj, LR .. "install --only-server=" .. h.quote(server) .. " flare-evals 1.1")
    _, out, err = run_recipe(ws, proj)
    assert.matches("flare%-evals 1%.1\n", out)
    assert.matches("flare: warning: luarocks%.lock pins flare%-evals 1%.0%-1, but 1%.1%-1 is " ..
      "installed %(" .. proj:gsub("%p", "%%%0") .. "/lua_modules%)", err)
    fs.remove(proj .. "/luarocks.lock")
  end)

  it("refuses to replay a run whose module changed, naming it, unless forced", function()
    local before = #h.run_dirs(proj, "eval")
    local status, _, err = h.sh(ws, proj, "flare run --replay " .. h.quote(runs.v10), 1)
    assert.equal(1, status)
    assert.matches("module flare_evals changed: the run used sha256 %x+ %(flare%-evals 1%.0%-1",
      err)
    assert.matches("now %x+ %(flare%-evals 1%.1%-1", err)
    assert.matches("refusing to replay", err)
    assert.equal(before, #h.run_dirs(proj, "eval"), "a refused replay makes no run directory")

    local _, out
    _, out, err = h.sh(ws, proj, "flare run --replay " .. h.quote(runs.v10) .. " --force")
    assert.matches("%-%-force: running anyway", err)
    assert.matches("flare%-evals 1%.1\n", out)
  end)

  it("replays a run once its module is back at the recorded version", function()
    h.sh(ws, proj, LR .. "install --only-server=" .. h.quote(server) .. " flare-evals 1.0")
    local before = h.run_dirs(proj, "eval")
    local _, out = h.sh(ws, proj, "flare run --replay " .. h.quote(runs.v10))
    assert.matches("replaying", out)
    assert.matches("flare%-evals 1%.0\n", out)
    local dirs = h.run_dirs(proj, "eval")
    assert.equal(#before + 1, #dirs)
    local was, now = h.config(runs.v10), h.config(dirs[#dirs])
    assert.same(was.modules, now.modules)
    assert.same(was.config, now.config)
    assert.same(was.args, now.args)
  end)
end)
