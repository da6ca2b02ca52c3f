-- flare.pipeline: stage records, --resume after the recorded stages, --from-stage on the
-- recorded outputs of the stages before it, metric lines of rerun stages set aside.
local pipeline = require("flare.pipeline")
local recipe = require("flare.recipe")
local fs = require("flare.fs")
local helpers = require("spec_helpers")
local quiet = helpers.quiet

local root, ran

-- Three stages; each logs two lines and returns what it got from the one before, plus one.
local function start(argv, fail_at)
  local run = recipe{name = "pipe", config = {from_stage = ""}, args = pipeline.args(argv),
    runs_dir = root, progress = false}
  local stages = {}
  for i, name in ipairs({"a", "b", "c"}) do
    stages[i] = {name = name, metric = "m", fixes = "fixes " .. name, run = function(ctx)
      if name == fail_at then error("stage " .. name .. " failed") end
      ran[#ran + 1] = name
      ctx:log{step = 1, m = i}
      ctx.logger{step = 2, m = i + 0.5}
      ctx:moved(i, i + 0.5)
      local prev = i > 1 and ctx.outputs[stages[i - 1].name] or {n = 0}
      return {n = prev.n + 1}
    end}
  end
  return pipeline{run = run, stages = stages, from_stage = run.config.from_stage}, run
end

local function records(run)
  local out = {}
  for _, r in ipairs(recipe.read_jsonl(run.dir .. "/stages.jsonl")) do out[#out + 1] = r.stage end
  return out
end

describe("flare.pipeline", function()
  before_each(function()
    root = helpers.temp_path("pipeline")
    ran = {}
  end)
  after_each(function() fs.remove(root, {recursive = true}) end)

  it("runs the stages in order and records their outputs and figures", function()
    local p, run = start({})
    quiet(function() p:run() end)
    assert.same({"a", "b", "c"}, ran)
    local r = recipe.read_jsonl(run.dir .. "/stages.jsonl")
    assert.same({n = 3}, r[3].outputs)
    assert.same({1, 1.5}, {r[1].before, r[1].after})
    local lines = recipe.read_jsonl(run.dir .. "/metrics.jsonl")
    assert.equal(6, #lines)
    assert.equal("b", lines[3].stage)
    assert.matches("2%. b%s+m%s+2.000 %-> 2.500", table.concat(p:map_lines(), "\n"))
  end)

  it("resumes after the last recorded stage, on the recorded outputs", function()
    local p = start({}, "c")
    assert.error_matches(function() quiet(function() p:run() end) end, "stage c failed")
    ran = {}
    local p2, run = start({"--resume"})
    quiet(function() p2:run() end)
    assert.same({"c"}, ran)
    assert.same({"a", "b", "c"}, records(run))
    assert.same({n = 3}, recipe.read_jsonl(run.dir .. "/stages.jsonl")[3].outputs)
  end)

  it("reruns from a stage (--from-stage implies --resume) and sets its old lines aside", function()
    local p, run = start({})
    quiet(function() p:run() end)
    ran = {}
    local p2, run2 = start({"--from-stage=b"})
    assert.equal(run.dir, run2.dir)
    quiet(function() p2:run() end)
    assert.same({"b", "c"}, ran)
    local lines = recipe.read_jsonl(run.dir .. "/metrics.jsonl")
    assert.equal(6, #lines)  -- a's two, then b's and c's of this run
    assert.same({"a", "a", "b", "b", "c", "c"}, {lines[1].stage, lines[2].stage, lines[3].stage,
      lines[4].stage, lines[5].stage, lines[6].stage})
    assert.equal(4, #recipe.read_jsonl(run.dir .. "/metrics.superseded.jsonl"))
    assert.matches("recorded", p2:map_lines()[2])
  end)

  it("records a stage's dataset by its name in the run directory", function()
    local function stages(seen)
      return {{name = "make", run = function(ctx)
        return {data = ctx:save_samples("made.jsonl", {{prompt = "1+1=", completion = "2"}})}
      end}, {name = "use", run = function(ctx)
        seen[#seen + 1] = ctx:load_samples(ctx.outputs.make.data)
      end}}
    end
    local seen = {}
    local run = recipe{name = "data", config = {}, args = {}, runs_dir = root, progress = false}
    quiet(function() pipeline{run = run, stages = stages(seen)}:run() end)
    assert.equal("made.jsonl", recipe.read_jsonl(run.dir .. "/stages.jsonl")[1].outputs.data)
    local again = recipe{name = "data", config = {from_stage = ""}, progress = false,
      args = pipeline.args({"--from-stage=use"}), runs_dir = root}
    quiet(function() pipeline{run = again, stages = stages(seen), from_stage = "use"}:run() end)
    assert.same({{prompt = "1+1=", completion = "2"}}, seen[2])
    fs.remove(run.dir .. "/made.jsonl")
    assert.error_matches(function()
      quiet(function() pipeline{run = again, stages = stages(seen), from_stage = "use"}:run() end)
    end, "stage dataset .*made.jsonl does not exist")
  end)

  it("names an unknown stage and a stage with no record", function()
    local p = start({}, "b")
    assert.error_matches(function() quiet(function() p:run() end) end, "stage b failed")
    assert.error_matches(function() start({"--from-stage=x"}) end,
      "no stage .x. %(stages: a, b, c%)")
    assert.error_matches(function() start({"--from-stage=c"}) end,
      "stage 'b' has no record in .*stages.jsonl")
  end)

  it("plans on a dry run: which stages run and which are reused", function()
    local p = start({})
    quiet(function() p:run() end)
    local out = {}
    local real = io.stdout
    io.stdout = {write = function(_, ...)  -- luacheck: ignore 122
      for _, s in ipairs({...}) do out[#out + 1] = s end
    end}
    local ok, err = pcall(function()
      local p2 = start({"--from-stage=c", "--dry-run"})
      assert.truthy(p2:plan())
    end)
    io.stdout = real  -- luacheck: ignore 122
    assert(ok, err)
    local text = table.concat(out)
    assert.matches("2%. b%s+%(recorded, reused%)", text)
    assert.matches("3%. c%s+%[fixes: fixes c%]", text)
  end)
end)
