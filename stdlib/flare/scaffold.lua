-- flare.scaffold: `flare new module NAME` writes a shareable workflow module, a folder
-- that `luarocks make` installs and `luarocks pack` packs as they are:
--
--   NAME/NAME-0.1-1.rockspec   the rock (pure Lua, builtin build)
--   NAME/MOD.lua               the module; MOD is NAME with '-' turned into '_'
--   NAME/MOD_spec.lua          its tests, run by `flare test MOD_spec.lua`
--   NAME/README.md             what it does, a usage example, how to publish it
--   NAME/.gitignore
--
-- flare is not a rock, so the rockspec cannot depend on it: the API version it was
-- written for is a label (flare-api-N) and the module checks flare.api_version when it
-- is required, which is where a mismatch can be told apart from any other error.
local checks = require("flare.args")
local fs = require("flare.fs")

local M = {}

local function fill(template, vars)
  return (template:gsub("{{(%w+)}}", function(k) return assert(vars[k], k) end))
end

local ROCKSPEC = [[
-- {{name}}: a flare workflow module, written for flare API {{api}}. flare is not a
-- rock, so it is not a dependency here: the label flare-api-{{api}} says which API
-- the module needs and the module checks flare.api_version when it is required.
rockspec_format = "3.0"
package = "{{name}}"
version = "0.1-1"
source = {
  -- The repository the team keeps the module in (`luarocks pack {{name}}` packs the
  -- installed module without fetching it; `luarocks pack` of this file fetches it).
  url = "git+https://git.example.com/your-team/{{name}}.git",
}
description = {
  summary = "{{name}}: a flare workflow module",
  detailed = "Needs flare API {{api}} (flare.api_version), checked when it is required.",
  labels = {"flare", "flare-api-{{api}}"},
  license = "MIT",
}
dependencies = {
  "lua ~> 5.1",  -- flare runs LuaJIT: install with `luarocks --lua-version 5.1`
}
build = {
  type = "builtin",
  modules = {
    {{mod}} = "{{mod}}.lua",
  },
}
test = {
  type = "command",
  command = "flare test {{mod}}_spec.lua",
}
]]

local MODULE = [[
-- {{name}}: a flare workflow module. See README.md.
local FLARE_API = {{api}}  -- the flare API this module is written for (flare.api_version)
if type(flare) ~= "table" or flare.api_version ~= FLARE_API then
  error(string.format("{{name}} needs flare API %d, this is %s", FLARE_API,
    type(flare) == "table" and "flare API " .. tostring(flare.api_version) or "not flare"), 2)
end

local M = {}

M.version = "0.1"  -- keep equal to the rockspec's version

-- The fraction of sampled completions that pass task:verify(problem, text), for the
-- groups sampler:sample returns (groups[i] holds the completions of problems[i]).
function M.pass_rate(task, problems, groups)
  local passed, total = 0, 0
  for i, group in ipairs(groups) do
    for _, completion in ipairs(group) do
      total = total + 1
      if task:verify(problems[i], completion.text) then passed = passed + 1 end
    end
  end
  return total > 0 and passed / total or 0
end

return M
]]

local SPEC = [[
-- Run with `flare test {{mod}}_spec.lua` (this folder comes first on the module path, so
-- the working copy is tested, not an installed one).
local m = require("{{mod}}")

describe("{{name}}", function()
  it("checks the flare API it was written for", function()
    assert.equal(flare.api_version, {{api}})
  end)

  it("counts the completions that pass the task's verifier", function()
    local task = flare.tasks.get("addition", {seed = 1})
    local problems = task:sample(2)
    local groups = {
      {{text = tostring(problems[1].answer)}, {text = "no"}},
      {{text = tostring(problems[2].answer)}, {text = tostring(problems[2].answer)}},
    }
    assert.equal(0.75, m.pass_rate(task, problems, groups))
    assert.equal(0, m.pass_rate(task, {}, {}))
  end)
end)
]]

local README = [[
# {{name}}

A flare workflow module (flare API {{api}}): `require("{{mod}}")` in a flare script.

## Use it

Install it into your project's `lua_modules` (flare searches it first) from your team's
rocks server, a folder or a static HTTP directory:

    luarocks --lua-version 5.1 --tree lua_modules install --only-server=ROCKS_SERVER {{name}}

Then in a recipe:

```lua
local {{mod}} = require("{{mod}}")
local run = flare.recipe{name = "eval", config = {n = 4, problems = 8}}
local fw = run:connect()
local info = fw.deployments:create_or_get{deployment_id = "eval",
  base_model = "accounts/local/models/tiny-gpt"}
run:on_exit(function() fw.deployments:scale_to_zero(info.deployment_id) end)
fw.deployments:wait_for_ready(info.deployment_id, {poll_interval_s = 1})
local task = flare.tasks.get("addition", {seed = 1})
local problems = task:sample(run.config.problems)
local prompts = {}
for i, p in ipairs(problems) do prompts[i] = p.prompt end
local groups = fw:sampler{deployment = info}:sample{prompts = prompts, n = run.config.n,
  max_tokens = 8}
run:log{step = 1, pass_rate = {{mod}}.pass_rate(task, problems, groups)}
```

The run's `config.json` records the module under `modules`: its rock, version, path and
the sha256 of its source.

## Develop it

    flare test {{mod}}_spec.lua

## Publish a version

Set the version in the rockspec's file name and `version` field and in `M.version`, then
install it into a scratch tree, pack it and add it to the server:

    luarocks --lua-version 5.1 make --tree build/rocks {{name}}-0.1-1.rockspec
    luarocks --lua-version 5.1 --tree build/rocks pack {{name}} 0.1-1
    cp {{name}}-0.1-1.all.rock {{name}}-0.1-1.rockspec ROCKS_SERVER/
    luarocks-admin --lua-version 5.1 make-manifest ROCKS_SERVER
]]

local GITIGNORE = [[
lua_modules/
build/
*.rock
]]

-- Writes the module's folder; returns the list of files written.
function M.module(name, dir)
  if type(name) ~= "string" or not name:match("^[a-z][a-z0-9_-]*$") then
    flare.error{code = "invalid_argument", message = "flare new module: NAME '" ..
      tostring(name) .. "' must be a rock name: lowercase letters, digits, '-' and '_', " ..
      "starting with a letter"}
  end
  dir = dir or name
  if fs.exists(dir) then
    flare.error{code = "invalid_argument", message = "flare new module: " .. dir ..
      " already exists (choose another NAME or --dir)"}
  end
  local vars = {name = name, mod = (name:gsub("-", "_")), api = tostring(flare.api_version)}
  local files = {
    {vars.name .. "-0.1-1.rockspec", ROCKSPEC},
    {vars.mod .. ".lua", MODULE},
    {vars.mod .. "_spec.lua", SPEC},
    {"README.md", README},
    {".gitignore", GITIGNORE},
  }
  fs.mkdir_p(dir)
  local written = {}
  for _, f in ipairs(files) do
    local path = dir .. "/" .. f[1]
    fs.write_file_atomic(path, fill(f[2], vars))
    written[#written + 1] = path
  end
  return written
end

return checks.checked(M, "flare.scaffold", {module = {"name:string", "dir:nil|string"}})
