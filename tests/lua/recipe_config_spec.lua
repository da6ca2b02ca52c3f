local recipe = require("flare.recipe")
local fs = require("flare.fs")
local helpers = require("spec_helpers")
local quiet = helpers.quiet
local json = require("flare.json")

local root
local defaults = {steps = 10, lr = 0.001, task = "vowels", async = false, group_size = 8}

local function new_run(args, extra)
  local o = {name = "spec", config = defaults, args = args, runs_dir = root, progress = false}
  for k, v in pairs(extra or {}) do o[k] = v end
  return recipe(o)
end

describe("flare.recipe config", function()
  before_each(function()
    root = helpers.temp_path("recipe")
  end)
  after_each(function() fs.remove(root, {recursive = true}) end)

  it("types values by their defaults", function()
    local p = recipe.parse_args({"--steps=3", "--lr=5e-3", "--task=addition", "--async",
      "--group-size=4"},
      defaults)
    assert.same({steps = 3, lr = 5e-3, task = "addition", async = true, group_size = 4},
      p.overrides)
    p = recipe.parse_args({"--no-async", "--async=false"}, defaults)
    assert.equal(false, p.overrides.async)
  end)

  it("rejects unknown keys with a did-you-mean and bad values naming the key", function()
    assert.error_matches(function() recipe.parse_args({"--step=3"}, defaults) end,
      "unknown option %-%-step %(did you mean %-%-steps%?%)")
    assert.error_matches(function() recipe.parse_args({"--dryrun"}, defaults) end,
      "did you mean %-%-dry%-run")
    assert.error_matches(function() recipe.parse_args({"--zzzzzz=1"}, defaults) end,
      "unknown option %-%-zzzzzz$")
    assert.error_matches(function() recipe.parse_args({"--steps=ten"}, defaults) end,
      "%-%-steps expects a number, got 'ten'")
    assert.error_matches(function() recipe.parse_args({"--async=maybe"}, defaults) end,
      "expects true or false")
    assert.error_matches(function() recipe.parse_args({"--task"}, defaults) end,
      "%-%-task expects a value")
    assert.error_matches(function() recipe.parse_args({"steps=3"}, defaults) end,
      "unexpected argument 'steps=3'")
    local err = assert.error_matches(function() recipe.parse_args({"--step=3"}, defaults) end, "")
    assert.equal("config", err.code)
  end)

  it("writes config.json with the resolved config, seed, hash and version", function()
    local run = new_run({"--steps=4"})
    assert.truthy(fs.is_dir(run.dir))
    assert.matches("^" .. root:gsub("%-", "%%-") .. "/spec/%d+%-%d+", run.dir)
    local meta = json.decode(fs.read_file(run.dir .. "/config.json"))
    assert.equal(4, meta.config.steps)
    assert.equal("vowels", meta.config.task)
    assert.equal(0, meta.seed)
    assert.equal(flare.version, meta.flare_version)
    assert.equal("spec", meta.name)
  end)

  it("creates nothing on a dry run", function()
    local run
    quiet(function() run = new_run({"--dry-run", "--steps=2"}) end)
    assert.truthy(run.dry_run)
    assert.is_nil(run.dir)
    assert.equal(2, run.config.steps)
    assert.falsy(fs.exists(root))
    local planned
    quiet(function() planned = run:plan{"create deployment x"} end)
    assert.truthy(planned)
    run:checkpoint{step = 1}
    quiet(function() run:log{step = 1, reward = 0.5} end)
    assert.falsy(fs.exists(root))
  end)

  it("logs metrics and checkpoints as JSONL", function()
    local run = new_run({})
    assert.falsy(run:plan{"x"})
    quiet(function()
      for step in run:steps() do
        run:log{step = step, reward_mean = step / 10}
        run:checkpoint{step = step, state = {sampled = step * 2}}
        if step == 3 then break end
      end
    end)
    local metrics = recipe.read_jsonl(run.dir .. "/metrics.jsonl")
    assert.equal(3, #metrics)
    assert.equal(0.3, metrics[3].reward_mean)
    local last = run:last_checkpoint()
    assert.equal(3, last.step)
    assert.equal(6, last.state.sampled)
  end)

  it("resumes the latest run after its last checkpoint, keeping its config", function()
    local first = new_run({"--steps=7", "--task=sort"})
    first:checkpoint{step = 1, state = {a = 1}}
    first:checkpoint{step = 2, state = {a = 2}}
    -- A torn last line (a crash mid-write) is ignored.
    local f = io.open(first.dir .. "/checkpoints.jsonl", "a")
    f:write("{\"step\": 3, \"sta")
    f:close()
    local run
    quiet(function() run = new_run({"--resume", "--lr=0.5"}) end)
    assert.truthy(run.resumed)
    assert.equal(first.dir, run.dir)
    assert.equal(3, run.start_step)
    assert.same({a = 2}, run.state)
    assert.equal(7, run.config.steps)
    assert.equal("sort", run.config.task)
    assert.equal(0.5, run.config.lr)
    local steps = {}
    for s in run:steps() do steps[#steps + 1] = s end
    assert.same({3, 4, 5, 6, 7}, steps)
  end)

  it("drops a torn last line when resuming, so later lines stay readable", function()
    local first = new_run({})
    first:checkpoint{step = 1, state = {a = 1}}
    local f = io.open(first.dir .. "/checkpoints.jsonl", "a")
    f:write("{\"step\": 2, \"sta")
    f:close()
    local run
    quiet(function() run = new_run({"--resume"}) end)
    run:checkpoint{step = 2, state = {a = 2}}
    local all = recipe.read_jsonl(run.dir .. "/checkpoints.jsonl")
    assert.equal(2, #all)
    assert.same({a = 2}, all[2].state)
  end)

  it("writes the metric it names for the report into config.json", function()
    local run = new_run({}, {main_metric = "reward"})
    local meta = json.decode(fs.read_file(run.dir .. "/config.json"))
    assert.equal("reward", meta.main_metric)
    assert.error_matches(function() new_run({}, {main_metric = 3}) end, "main_metric")
  end)

  it("fails to resume when there is no earlier run", function()
    assert.error_matches(function() new_run({"--resume"}) end, "no earlier run of 'spec'")
  end)

  it("draws a sparkline", function()
    assert.equal("▁▅█", recipe.sparkline({0, 0.5, 1}))
    assert.equal("▁▁", recipe.sparkline({0, 0}, 0, 1))
  end)
end)
