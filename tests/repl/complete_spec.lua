-- flare.repl.complete: what Tab offers at the prompt.
local complete = require("flare.repl.complete")

local function words(line, env)
  local start, list = complete.complete(line, env)
  return list, start
end

describe("flare.repl.complete names", function()
  it("completes globals and keywords", function()
    local env = { learning_rate = 1, lora_rank = 2, print = print }
    local list, start = words("x = lo", env)
    assert.same({ "local", "lora_rank" }, list)
    assert.equal(5, start)
  end)

  it("completes fields of nested tables", function()
    local env = { cfg = { trainer = { lr = 1, lora = 2, batch = 3 } } }
    local list, start = words("print(cfg.trainer.l", env)
    assert.same({ "lora", "lr" }, list)
    assert.equal(#"print(cfg.trainer." + 1, start)
  end)

  it("follows __index tables and offers only functions after ':'", function()
    local Base = { describe = function() end, kind = "base" }
    Base.__index = Base
    local Mid = setmetatable({ deploy = function() end }, Base)
    Mid.__index = Mid
    local obj = setmetatable({ data = 1 }, Mid)
    assert.same({ "data", "deploy", "describe" }, (words("obj.d", { obj = obj })))
    assert.same({ "deploy(", }, (words("obj:dep", { obj = obj })))
    assert.same({ "deploy", "describe" }, (words("obj:d", { obj = obj })))
  end)

  it("offers a manager's public methods, not its private ones, metamethods or new", function()
    local Deployments = require("flare.fireworks.deployments")
    local env = { fw = { deployments = Deployments.new({}) } }
    local list = words("fw.deployments:", env)
    assert.same({ "create_or_get", "delete", "get", "hotload", "hotload_and_wait",
      "hotload_check_status", "list", "reattach_trainer", "scale_to_zero", "update",
      "wait_for_ready", "warmup" }, list)
    local private = words("fw.deployments:_", env)
    for _, n in ipairs({ "__tostring", "_hotload_headers", "_info", "_name", "_path", "_probe" }) do
      local found = false
      for _, m in ipairs(private) do found = found or m == n end
      assert.truthy(found, n .. " is offered once '_' is typed")
    end
    assert.same({ "_name(" }, (words("fw.deployments:_na", env)))
  end)

  it("hides '_' names and inherited constructors until '_' is typed", function()
    local Class = { new = function() end, run = function() end, _helper = function() end }
    Class.__index = Class
    local obj = setmetatable({ _state = 1, value = 2 }, Class)
    local env = { obj = obj, Class = Class, _hidden = 1, visible = 2 }
    assert.same({ "run", "value" }, (words("obj.", env)))
    assert.same({ "run(" }, (words("obj:", env)))
    assert.same({ "__index", "_helper", "_state" }, (words("obj._", env)))
    assert.same({ "new", "run" }, (words("Class.", env)), "a class's own new is its API")
    assert.same({ "_hidden" }, (words("_hid", env)))
  end)

  it("completes string methods", function()
    assert.same({ "upper(" }, (words("s:up", { s = "text" })))
  end)

  it("offers the lazily loaded flare modules", function()
    local list = words("flare.js", _G)
    assert.same({ "json", "jsonl" }, list)
    local all = words("flare.", _G)
    local has = {}
    for _, n in ipairs(all) do has[n] = true end
    assert.truthy(has.sleep and has.version and has.json and has.report,
      "flare functions and modules")
  end)

  it("offers nothing inside numbers or after non-names", function()
    assert.same({}, (words("x = 1e", {})))
    assert.same({}, (words("t[1].a", { t = { { a = 1 } } })))
    assert.same({}, (words("nothing.here", {})))
  end)

  it("survives an __index that raises", function()
    local angry = setmetatable({}, { __index = function() error("no") end })
    assert.same({}, (words("angry.x.y", { angry = angry })))
  end)
end)

describe("flare.repl.complete modules", function()
  it("completes module names on the search path after require", function()
    local list, start = words('local p = require("flare.repl.pr', _G)
    assert.same({ "flare.repl.pretty" }, list)
    assert.equal(#'local p = require("' + 1, start)
    local reports = words("require 'flare.rep", _G)
    local has = {}
    for _, n in ipairs(reports) do has[n] = true end
    assert.truthy(has["flare.report"] and has["flare.repl.complete"])
  end)
end)

describe("flare.repl.complete deployment ids", function()
  local calls
  local function manager(result, fail)
    return {
      list = function()
        calls = calls + 1
        if fail then error({ code = "unavailable", message = "no server" }) end
        return result
      end,
    }
  end
  before_each(function() calls = 0 end)

  it("offers ids from deployments:list() after get(\"", function()
    local fw = { deployments = manager({ { deployment_id = "research-a" },
      { deployment_id = "research-b" },
      { name = "accounts/me/deployments/other" } }) }
    local list, start = words('info = fw.deployments:get("res', { fw = fw })
    assert.same({ "research-a", "research-b" }, list)
    assert.equal(#'info = fw.deployments:get("' + 1, start)
    assert.same({ "other" }, (words("fw.deployments:get('o", { fw = fw })))
    assert.equal(1, calls, "the list is cached")
  end)

  it("accepts a {deployments = {...}} page", function()
    local fw = { deployments = manager({ deployments = { { deployment_id = "d1" } } }) }
    assert.same({ "d1" }, (words('fw.deployments:get("', { fw = fw })))
  end)

  it("asks again once the cache is old", function()
    local saved = complete.id_cache_seconds
    complete.id_cache_seconds = -1
    local fw = { deployments = manager({ { deployment_id = "d1" } }) }
    words('fw.deployments:get("', { fw = fw })
    words('fw.deployments:get("', { fw = fw })
    complete.id_cache_seconds = saved
    assert.equal(2, calls)
  end)

  it("ignores a failing list()", function()
    local fw = { deployments = manager(nil, true) }
    assert.same({}, (words('fw.deployments:get("', { fw = fw })))
  end)
end)
