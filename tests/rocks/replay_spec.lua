-- flare run --replay RUN_DIR [--force] with modules outside any rock (the script's folder,
-- FLARE_PATH): the same arguments and config, refusals that name the module or the script,
-- --force, and records that cannot be replayed.
package.path = (os.getenv("FLARE_SOURCE_DIR") or ".") .. "/tests/rocks/?.lua;" .. package.path
local h = require("rocks_helpers")

local TRAIN = [[
local helper = require("helper")
local util = require("shared_util")
local run = flare.recipe{name = "train", config = {steps = 2, tag = "a"}}
print("helper " .. helper.version .. " util " .. util.version .. " steps " .. run.config.steps ..
  " tag " .. run.config.tag)
run:log{step = 1, steps = run.config.steps}
]]

describe("flare run --replay", function()
  local ws = h.workspace()
  local proj, shared = ws .. "/proj", ws .. "/shared"
  local env = {FLARE_PATH = shared}
  h.write(proj .. "/scripts/train.lua", TRAIN)
  h.write(proj .. "/scripts/helper.lua", 'return {version = "1"}\n')
  h.write(shared .. "/shared_util.lua", 'return {version = "u1"}\n')
  local first

  local function latest()
    local dirs = h.run_dirs(proj, "train")
    return dirs[#dirs], #dirs
  end

  it("runs the script again with the recorded arguments and config", function()
    local _, out = h.sh(ws, proj, "flare run scripts/train.lua --steps=3 --tag=b", 0, env)
    assert.matches("helper 1 util u1 steps 3 tag b", out)
    first = latest()
    _, out = h.sh(ws, proj, "flare run --replay " .. h.quote(first), 0, env)
    assert.matches("replaying " .. first:gsub("%p", "%%%0") ..
      ": scripts/train.lua %-%-steps=3 %-%-tag=b", out)
    assert.matches("helper 1 util u1 steps 3 tag b", out)
    local was, now = h.config(first), h.config(latest())
    assert.truthy(latest() ~= first)
    assert.same(was.config, now.config)
    assert.same(was.args, now.args)
    assert.same(was.modules, now.modules)
    assert.is_nil(was.replay_of)
    assert.equal(first, now.replay_of)
    assert.equal(proj .. "/scripts/helper.lua", was.modules.helper.path)
    assert.equal(shared .. "/shared_util.lua", was.modules.shared_util.path)
  end)

  it("refuses when a module's source changed, naming it, and runs with --force", function()
    h.write(proj .. "/scripts/helper.lua", 'return {version = "2"}\n')
    local _, count = latest()
    local _, out, err = h.sh(ws, proj, "flare run --replay " .. h.quote(first), 1, env)
    assert.equal("", out)
    assert.matches("flare: run %-%-replay: module helper changed: the run used sha256 %x+ %(" ..
      (proj .. "/scripts/helper.lua"):gsub("%p", "%%%0") .. "%), now %x+", err)
    assert.falsy(err:find("shared_util", 1, true), "only the changed module is named")
    assert.matches("refusing to replay", err)
    assert.equal(count, select(2, latest()), "a refused replay makes no run directory")

    _, out, err = h.sh(ws, proj, "flare run --replay " .. h.quote(first) .. " --force", 0, env)
    assert.matches("module helper changed", err)
    assert.matches("%-%-force: running anyway", err)
    assert.matches("helper 2 util u1 steps 3 tag b", out)
    assert.truthy(h.config(latest()).modules.helper.sha256 ~=
      h.config(first).modules.helper.sha256)
    h.write(proj .. "/scripts/helper.lua", 'return {version = "1"}\n')
  end)

  it("refuses when a module is not found or the script changed", function()
    local _, _, err = h.sh(ws, proj, "flare run --replay " .. h.quote(first), 1, {FLARE_PATH = ""})
    assert.matches("module shared_util %(" .. (shared .. "/shared_util.lua"):gsub("%p", "%%%0") ..
      "%) is not found now", err)
    h.write(proj .. "/scripts/train.lua", TRAIN .. "-- edited\n")
    _, _, err = h.sh(ws, proj, "flare run --replay " .. h.quote(first), 1, env)
    assert.matches("script scripts/train%.lua changed: the run used sha256 %x+, now %x+", err)
    h.write(proj .. "/scripts/train.lua", TRAIN)
    h.sh(ws, proj, "flare run --replay " .. h.quote(first), 0, env)
  end)

  it("says why a record cannot be replayed", function()
    h.write(ws .. "/bad/config.json", '{"script": "x.lua",}')
    local _, _, err = h.sh(ws, proj, "flare run --replay ../bad", 1)
    assert.matches("config%.json is not JSON %(byte offset %d+%)", err)
    h.write(ws .. "/bad/config.json", '{"args": []}')
    _, _, err = h.sh(ws, proj, "flare run --replay ../bad", 1)
    assert.matches("has no field 'script'", err)
    h.write(ws .. "/bad/config.json", '{"script": "gone.lua", "args": [1]}')
    _, _, err = h.sh(ws, proj, "flare run --replay ../bad", 1)
    assert.matches("field 'args' of .* holds a non%-string", err)
    h.write(ws .. "/bad/config.json", '{"script": "gone.lua", "args": []}')
    _, _, err = h.sh(ws, proj, "flare run --replay ../bad", 1)
    assert.matches("the run's script gone%.lua is not found", err)
    _, _, err = h.sh(ws, proj, "flare run --replay ../nothing-here", 1)
    assert.matches("cannot read %.%./nothing%-here/config%.json", err)
    _, _, err = h.sh(ws, proj, "flare run --replay", 2)
    assert.matches("%-%-replay needs a run directory", err)
    _, _, err = h.sh(ws, proj, "flare run --force", 2)
    assert.matches("%-%-force goes with %-%-replay RUN_DIR", err)
    _, _, err = h.sh(ws, proj, "flare run --replay " .. h.quote(first) .. " --steps=9", 2)
    assert.matches("unexpected argument '%-%-steps=9'", err)
  end)
end)
