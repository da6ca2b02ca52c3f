-- The same shared recipe (scripts/grpo.lua, short settings) run trusted and with
-- `flare run --sandbox`, each on a fresh emulator: the metrics are the same line for line
-- (all but the timings).
local proc = require("flare.proc")
local fs = require("flare.fs")
local recipe = require("flare.recipe")

local root = os.getenv("FLARE_SOURCE_DIR") or fs.cwd()
local scratch = "/tmp/flare-sandbox-recipe-" .. fs.getpid() .. "-" ..
  math.floor(flare.clock() * 1e6)
fs.mkdir_p(scratch)
flare.defer(function() fs.remove(scratch, {recursive = true}) end, "remove the scratch folder")

local ARGS = {"--steps=4", "--group-size=4", "--seed=3"}

local function grpo(name, sandbox_flags)
  local dir = scratch .. "/" .. name
  fs.mkdir_p(dir)
  local argv = {"/proc/self/exe", "run"}
  for _, f in ipairs(sandbox_flags or {}) do argv[#argv + 1] = f end
  argv[#argv + 1] = root .. "/scripts/grpo.lua"
  for _, a in ipairs(ARGS) do argv[#argv + 1] = a end
  local r = proc.run{argv = argv, cwd = dir, timeout_s = 240, env = {
    FLARE_EMULATOR_STATE_DIR = dir .. "/emulator", FLARE_RUNS_DIR = dir .. "/runs",
    FLARE_EMULATOR_URL = "", FIREWORKS_API_KEY = "", FIREWORKS_BASE_URL = ""}}
  assert.equal(0, r.status, r.stdout .. r.stderr)
  local runs = fs.list_dir(dir .. "/runs/grpo")
  local metrics = recipe.read_jsonl(dir .. "/runs/grpo/" .. runs[#runs] .. "/metrics.jsonl")
  for _, m in ipairs(metrics) do m.time, m.sync_s = nil, nil end
  return metrics, r
end

describe("a shared recipe, trusted and sandboxed", function()
  it("scripts/grpo.lua gives the same metrics in the sandbox", function()
    local trusted = grpo("trusted")
    local sandboxed = grpo("sandboxed", {"--sandbox", "--allow-prefix", "grpo-"})
    assert.equal(4, #trusted)
    assert.same(trusted, sandboxed)
  end)

  it("a sandboxed run's record names the modules it required", function()
    local dir = scratch .. "/record"
    fs.mkdir_p(dir .. "/runs")
    fs.write_file_atomic(dir .. "/helper.lua", "return {answer = 42}\n")
    fs.write_file_atomic(dir .. "/main.lua", [[
      local helper = require("helper")
      local run = flare.recipe{name = "record", config = {}}
      run:log{step = 1, answer = helper.answer}
    ]])
    local r = proc.run{argv = {"/proc/self/exe", "run", "--sandbox", "--run-dir", dir .. "/runs",
      dir .. "/main.lua"}, cwd = dir, timeout_s = 60}
    assert.equal(0, r.status, r.stdout .. r.stderr)
    local runs = fs.list_dir(dir .. "/runs/record")
    local config = flare.json.decode(assert(fs.read_file(dir .. "/runs/record/" ..
      runs[#runs] .. "/config.json")))
    local entry = config.modules and config.modules.helper
    assert.truthy(entry, "config.json has no modules.helper")
    assert.equal(dir .. "/helper.lua", entry.path)
    assert.equal(fs.sha256("return {answer = 42}\n"), entry.sha256)
  end)

  it("without --allow-prefix it stops at its first deployment call, naming the rule", function()
    local dir = scratch .. "/denied"
    fs.mkdir_p(dir)
    local r = proc.run{argv = {"/proc/self/exe", "run", "--sandbox", root .. "/scripts/grpo.lua",
      "--steps=1"}, cwd = dir, timeout_s = 120, env = {
      FLARE_EMULATOR_STATE_DIR = dir .. "/emulator", FLARE_RUNS_DIR = dir .. "/runs",
      FLARE_EMULATOR_URL = "", FIREWORKS_API_KEY = ""}}
    assert.equal(1, r.status, r.stderr)
    assert.truthy(r.stderr:find("api.resources denied: GET deployment 'grpo-tiny'", 1, true),
      r.stderr)
    assert.truthy(r.stderr:find("--allow-prefix grpo-", 1, true), r.stderr)
  end)
end)
