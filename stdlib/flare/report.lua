-- flare.report: a run's curves, as a self-contained HTML page or a terminal chart.
--
--   local report = require("flare.report")
--   local run = report.load("runs/grpo/20260101-120000")
--       run.config (config.json), run.rows (metrics.jsonl lines), run.series[name] =
--       {steps = {...}, values = {...}}, run.metric_names (main metric first),
--       run.main_metric, run.checkpoints (checkpoints.jsonl lines), run.timings
--       run.stages (stage names, when metrics lines carry a `stage`: series "<stage>/<metric>")
--   report.write_html(run, path)        -- inline SVG, no network; returns path
--   report.render_html(run) -> string
--   report.term_chart(series, opts) -> string
--       series: {steps =, values =} or a list of numbers; opts: width (60), height (8),
--       title, color (false)
--   report.term_summary(run, opts) -> string   -- main metric chart + one line per metric
--   report.main_metric(names, config) -> config.main_metric (as flare.recipe writes it)
--       when it is one of names, else "reward" or "reward_mean", else the first name
--
-- The parts: flare.report.load (run directory, series, stats), flare.report.html,
-- flare.report.term, flare.report.cli (`flare report`). Files are read by flare.jsonl;
-- numbers, durations and sparklines come from flare.format.
local load = require("flare.report.load")
local html = require("flare.report.html")
local term = require("flare.report.term")
local format = require("flare.format")

-- Arguments are checked before each call (a misuse raises invalid_argument naming the field).
return require("flare.args").checked({
  load = load.load,
  main_metric = load.main_metric,
  stats = load.stats,
  read_jsonl = require("flare.jsonl").read,
  render_html = html.render_html,
  write_html = html.write_html,
  svg_plot = html.svg_plot,
  nice_ticks = html.nice_ticks,
  palette = html.palette,
  term_chart = term.term_chart,
  term_summary = term.term_summary,
  format_number = format.number,
  sparkline = function(values, width) return format.sparkline(values, { width = width or 24 }) end,
  cli = require("flare.report.cli"),
}, "flare.report", {
  load = {"dir:string"},
  main_metric = {"names:table", "config:nil|table", "stages:nil|table"},
  stats = {"values:table"},
  read_jsonl = {"path:string"},
  render_html = {"run:table"},
  write_html = {"run:table", "path:nil|string"},
  svg_plot = {"name:string", "series:table", "color:nil|string"},
  nice_ticks = {"lo:number", "hi:number", "count:nil|number"},
  term_chart = {"series:table", {"opts", {width = "number", height = "number", title = "string",
    color = "boolean"}}},
  term_summary = {"run:table", {"opts", {width = "number", height = "number", color = "boolean"}}},
  format_number = {"v:nil|number"},
  sparkline = {"values:table", "width:nil|number"},
  cli = {{"opts", {dir = "string", out = "string", term = "boolean", color = "boolean"}}},
})
