-- flare.report: loading run directories, the HTML page and the terminal chart.
local report = require("flare.report")
local json = require("flare.json")

local function make_dir()
  local path = os.tmpname()
  os.remove(path)
  assert(os.execute("mkdir -p '" .. path .. "'") == 0 and flare.fs.is_dir(path),
    "cannot create " .. path)
  return path
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- A run shaped like flare.recipe's: reward rising from 0.1 to 0.8 over `steps`.
local function make_run(steps, extra)
  local dir = make_dir()
  write(dir .. "/config.json", json.encode({ name = "spec-run", seed = 3, flare_version = "0.1.0",
    config = { steps = steps, lr = 0.001 } }))
  local lines = {}
  for step = 1, steps do
    local row = { step = step, time = 1000 + 2 * step,
      reward_mean = 0.1 + 0.7 * (step - 1) / (steps - 1),
      kl = 0.01 * step, sync_s = step % 2 == 0 and 0.5 or 1.5, note = "words" }
    for k, v in pairs(extra or {}) do row[k] = v end
    lines[#lines + 1] = json.encode(row)
  end
  write(dir .. "/metrics.jsonl", table.concat(lines, "\n") .. "\n")
  write(dir .. "/checkpoints.jsonl", json.encode({ step = steps,
    snapshot = "step-" .. steps }) .. "\n")
  return dir
end

local function remove(dir)
  os.execute("rm -rf '" .. dir .. "'")
end

describe("flare.report.load", function()
  local dir
  after_each(function() if dir then remove(dir) end end)

  it("reads config, metric series, checkpoints and timings", function()
    dir = make_run(10)
    local run = report.load(dir)
    assert.equal("spec-run", run.name)
    assert.equal(3, run.config.seed)
    assert.same({ "reward_mean", "kl", "sync_s" }, run.metric_names)
    assert.equal("reward_mean", run.main_metric)
    assert.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, run.series.reward_mean.steps)
    assert.near(0.8, run.series.reward_mean.values[10], 1e-12)
    assert.equal(1, #run.checkpoints)
    assert.equal(18, run.timings.wall_s)
    assert.equal("sync_s", run.timings.durations[1].name)
    assert.equal(10, run.timings.durations[1].stats.total)
  end)

  it("takes the first metric by name when there is no reward_mean", function()
    dir = make_dir()
    write(dir .. "/metrics.jsonl",
      '{"step": 1, "zeta": 1, "alpha": 2}\n{"step": 2, "zeta": 3, "alpha": 4}\n')
    local run = report.load(dir)
    assert.equal("alpha", run.main_metric)
    assert.same({ "alpha", "zeta" }, run.metric_names)
  end)

  it("charts the recipe's reward first, not the alphabetically first metric", function()
    dir = make_dir()
    write(dir .. "/metrics.jsonl", '{"step": 1, "groups_kept": 4, "reward": 0.2, "kl": 0}\n' ..
      '{"step": 2, "groups_kept": 3, "reward": 0.5, "kl": 0.1}\n')
    local run = report.load(dir)
    assert.equal("reward", run.main_metric)
    assert.same({ "reward", "groups_kept", "kl" }, run.metric_names)
    local text = report.term_summary(run, { width = 20, height = 3 })
    assert.matches("\nreward  last 0%.5", text)
  end)

  it("charts the metric config.json names as main_metric", function()
    dir = make_run(4)
    local config = json.decode(read(dir .. "/config.json"))
    config.main_metric = "kl"
    write(dir .. "/config.json", json.encode(config))
    local run = report.load(dir)
    assert.equal("kl", run.main_metric)
    assert.same({ "kl", "reward_mean", "sync_s" }, run.metric_names)
    config.main_metric = "not_logged"
    write(dir .. "/config.json", json.encode(config))
    assert.equal("reward_mean", report.load(dir).main_metric, "falls back when it is absent")
  end)

  it("skips a torn last line, as a run killed mid-write leaves", function()
    dir = make_dir()
    write(dir .. "/metrics.jsonl", '{"step": 1, "kl": 0.1}\n{"step": 2, "kl": 0.2}\n{"step": 3, "k')
    local run = report.load(dir)
    assert.same({ 0.1, 0.2 }, run.series.kl.values)
  end)

  it("files a pipeline's metrics per stage, in stage order", function()
    dir = make_dir()
    write(dir .. "/config.json", json.encode({ name = "r1", main_metric = "correct_rate" }))
    write(dir .. "/metrics.jsonl", table.concat({
      '{"stage": "sft", "step": 1, "loss": 3}', '{"stage": "sft", "step": 2, "loss": 2}',
      '{"stage": "sft", "eval": "after", "correct_rate": 0.2}',
      '{"stage": "rl", "step": 1, "reward": 0.1}', '{"stage": "rl", "step": 2, "reward": 0.3}',
      '{"stage": "rl", "eval": "after", "correct_rate": 0.4}' }, "\n") .. "\n")
    local run = report.load(dir)
    assert.same({ "sft", "rl" }, run.stages)
    assert.same({ 3, 2 }, run.series["sft/loss"].values)
    assert.same({ 0.1, 0.3 }, run.series["rl/reward"].values)
    assert.is_nil(run.series.loss)
    assert.equal("sft/correct_rate", run.main_metric)
    assert.same({ "sft/correct_rate", "sft/loss", "rl/correct_rate", "rl/reward" },
      run.metric_names)
    assert.matches("rl/reward", report.term_summary(run, { width = 20, height = 3 }), 1, true)
  end)

  it("uses the line number when a line has no step", function()
    dir = make_dir()
    write(dir .. "/metrics.jsonl", '{"loss": 3}\n\n{"loss": 2}\n')
    local run = report.load(dir)
    assert.same({ 1, 2 }, run.series.loss.steps)
  end)

  it("names the file and line of a bad metrics line", function()
    dir = make_dir()
    write(dir .. "/metrics.jsonl",
      '{"step": 1, "kl": 0.1}\n{"step": 2, "kl": 0.2}\n{"step": 3, "kl": \n')
    assert.error_matches(function() report.load(dir) end, "metrics%.jsonl line 3")
  end)

  it("rejects a line that is not an object", function()
    dir = make_dir()
    write(dir .. "/metrics.jsonl", '[1, 2]\n')
    assert.error_matches(function() report.load(dir) end, "line 1: expected a JSON object")
  end)

  it("rejects a directory that is not a run", function()
    dir = make_dir()
    assert.error_matches(function() report.load(dir) end, "is not a run directory")
  end)
end)

describe("flare.report HTML", function()
  local dir
  after_each(function() if dir then remove(dir) end end)

  it("draws one polyline per metric, rising for a rising reward", function()
    dir = make_run(20)
    local html = report.render_html(report.load(dir))
    local polylines = {}
    for points in html:gmatch('<polyline[^>]- points="([^"]*)"') do
      polylines[#polylines + 1] = points end
    assert.equal(3, #polylines)
    local xs, ys = {}, {}
    for x, y in polylines[1]:gmatch("([%d%.]+),([%d%.]+)") do
      xs[#xs + 1] = tonumber(x)
      ys[#ys + 1] = tonumber(y)
    end
    assert.equal(20, #xs)
    assert.truthy(xs[20] > xs[1] + 300, "the series spans the plot")
    assert.truthy(ys[20] < ys[1] - 100, "higher reward is drawn higher")
    for i = 2, 20 do assert.truthy(xs[i] > xs[i - 1], "x follows the step") end
  end)

  it("is self-contained and escapes what it shows", function()
    dir = make_run(5)
    write(dir .. "/config.json", json.encode({ name = "<script>alert(1)</script>",
      config = { note = "a&b" } }))
    local html = report.render_html(report.load(dir))
    assert.falsy(html:find("<script", 1, true), "no script tags")
    assert.truthy(html:find("&lt;script&gt;alert(1)&lt;/script&gt;", 1, true))
    assert.truthy(html:find("a&amp;b", 1, true))
    assert.falsy(html:find('src="', 1, true))
    assert.falsy(html:find('href="', 1, true))
    assert.falsy(html:find("https://", 1, true))
  end)

  it("shows a single point as a dot and a constant series without dividing by zero", function()
    dir = make_dir()
    write(dir .. "/metrics.jsonl", '{"step": 4, "reward_mean": 0.5, "loss": 2}\n')
    local html = report.render_html(report.load(dir))
    assert.truthy(html:find("<circle", 1, true))
    assert.falsy(html:find("nan", 1, true))
    assert.falsy(html:find("inf", 1, true))
  end)

  it("writes RUN_DIR/report.html", function()
    dir = make_run(5)
    local path = report.write_html(report.load(dir))
    assert.equal(dir .. "/report.html", path)
    assert.matches("^<!DOCTYPE html>", read(path))
  end)
end)

describe("flare.report.term_chart", function()
  local braille = "[\226][\160-\163][\128-\191]"

  local function plot_rows(text)
    local rows = {}
    for line in text:gmatch("[^\n]+") do
      if line:find(braille) then rows[#rows + 1] = line end
    end
    return rows
  end

  it("draws width x height braille cells with labels", function()
    local text = report.term_chart({ 1, 2, 3, 4, 5, 6, 7, 8 },
      { width = 20, height = 5, title = "loss" })
    assert.matches("^loss  last 8  min 1  max 8  %(8 points%)", text)
    local rows = plot_rows(text)
    assert.equal(5, #rows)
    for _, r in ipairs(rows) do
      local _, cells = r:gsub(braille, "")
      assert.equal(20, cells)
    end
    assert.matches("^8 ┤", rows[1])
    assert.matches("^1 ┤", rows[5])
    assert.matches("step 1 +8$", text)
  end)

  it("puts a rising series low on the left and high on the right", function()
    local values = {}
    for i = 1, 30 do values[i] = i * i end
    local rows = plot_rows(report.term_chart({ values = values }, { width = 30, height = 6 }))
    local function first_cell(r) return r:match("[┤│]" .. "(" .. braille .. ")") end
    local function last_cell(r) return r:match("(" .. braille .. ")$") end
    assert.falsy(first_cell(rows[1]) ~= "\226\160\128", "nothing top-left")
    assert.truthy(last_cell(rows[1]) ~= "\226\160\128", "the top row ends with dots")
    assert.truthy(first_cell(rows[6]) ~= "\226\160\128", "the bottom row starts with dots")
  end)

  it("uses the steps given", function()
    local text = report.term_chart({ steps = { 10, 20, 30 }, values = { 0.1, 0.2, 0.4 } },
      { width = 10, height = 2 })
    assert.matches("step 10 +30$", text)
  end)

  it("copes with one point, constant series and no data", function()
    assert.equal(4 + 1, #plot_rows(report.term_chart({ 5 }, { height = 5 })))
    assert.equal(3, #plot_rows(report.term_chart({ 2, 2, 2 }, { height = 3 })))
    assert.matches("%(no data%)", report.term_chart({}, {}))
    assert.matches("%(no data%)", report.term_chart({ steps = { 1 }, values = { 0 / 0 } }, {}))
  end)

  it("colours only when asked", function()
    assert.falsy(report.term_chart({ 1, 2 }):find("\27[", 1, true))
    assert.truthy(report.term_chart({ 1, 2 }, { color = true }):find("\27[36m", 1, true))
  end)
end)

describe("flare.report helpers", function()
  it("picks round axis ticks", function()
    assert.same({ 0, 0.2, 0.4, 0.6, 0.8, 1 }, (function()
      local t = report.nice_ticks(0, 1, 5)
      for i, v in ipairs(t) do t[i] = tonumber(string.format("%.10g", v)) end
      return t
    end)())
    assert.same({ 10, 20, 30, 40 }, report.nice_ticks(7, 43, 4))
  end)

  it("draws sparklines from low to high blocks", function()
    assert.equal("▁▂▃▄▅▆▇█", report.sparkline({ 1, 2, 3, 4, 5, 6, 7, 8 }, 8))
    assert.equal("▄▄▄", report.sparkline({ 1, 1, 1 }, 8))
  end)

  it("summarises a run for the terminal with the main metric charted", function()
    local dir = make_run(12)
    local text = report.term_summary(report.load(dir), { width = 30, height = 4 })
    remove(dir)
    assert.matches("run spec%-run", text)
    assert.matches("\nreward_mean  last 0%.8", text)
    assert.matches("\nkl +[▁▂▃▄▅▆▇█]+  last 0%.12", text)
  end)
end)
