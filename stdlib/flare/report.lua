-- flare.report: a run's curves, as a self-contained HTML page or a terminal chart.
--
--   local report = require("flare.report")
--   local run = report.load("runs/grpo/20260101-120000")
--       run.config (config.json), run.rows (metrics.jsonl lines), run.series[name] =
--       {steps = {...}, values = {...}}, run.metric_names (main metric first),
--       run.main_metric, run.checkpoints (checkpoints.jsonl lines), run.timings
--   report.write_html(run, path)        -- inline SVG, no network; returns path
--   report.render_html(run) -> string
--   report.term_chart(series, opts) -> string
--       series: {steps =, values =} or a list of numbers; opts: width (60), height (8),
--       title, color (false)
--   report.term_summary(run, opts) -> string   -- main metric chart + one line per metric
--   report.main_metric(names) -> "reward_mean" if present, else the first name
--
-- A metric is any key of a metrics line whose value is a finite number, except
-- step and the timestamps (time, timestamp, wall_time).
local M = {}

local function json() return require("flare.json") end

local not_metrics = { step = true, time = true, timestamp = true, wall_time = true }

local function is_finite(v)
  return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge
end

local read_file = require("flare.fs").read_file  -- data, or nil when it cannot be read

local function read_jsonl(path)
  local text = read_file(path)
  if text == nil then return nil end
  local rows, line_no = {}, 0
  for line in text:gmatch("([^\n]*)\n?") do
    line_no = line_no + 1
    if line:match("%S") then
      local ok, value = pcall(json().decode, line)
      if not ok then
        error(string.format("%s line %d: %s", path, line_no, tostring(value)), 0)
      end
      if type(value) ~= "table" or rawget(value, 1) ~= nil then
        error(string.format("%s line %d: expected a JSON object", path, line_no), 0)
      end
      rows[#rows + 1] = value
    end
  end
  return rows
end
M.read_jsonl = read_jsonl

function M.main_metric(names)
  for _, n in ipairs(names) do
    if n == "reward_mean" then return n end
  end
  return names[1]
end

local function quantile(sorted, q)
  if #sorted == 0 then return nil end
  local pos = 1 + (#sorted - 1) * q
  local lo = math.floor(pos)
  local hi = math.min(lo + 1, #sorted)
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo)
end

local function stats(values)
  local sorted, sum = {}, 0
  for i, v in ipairs(values) do
    sorted[i] = v
    sum = sum + v
  end
  table.sort(sorted)
  return {
    count = #sorted, total = sum, mean = #sorted > 0 and sum / #sorted or nil,
    min = sorted[1], max = sorted[#sorted], p50 = quantile(sorted, 0.5), p90 = quantile(sorted, 0.9),
    last = values[#values], first = values[1],
  }
end
M.stats = stats

local function is_duration(name)
  return name:match("_s$") or name:match("_seconds$") or name:match("_ms$")
end

-- Series of every metric; steps default to the line number when a line has none.
local function build_series(rows)
  local series, names = {}, {}
  for i, row in ipairs(rows) do
    local step = is_finite(row.step) and row.step or i
    for k, v in pairs(row) do
      if type(k) == "string" and not not_metrics[k] and is_finite(v) then
        local s = series[k]
        if not s then
          s = { steps = {}, values = {} }
          series[k] = s
          names[#names + 1] = k
        end
        s.steps[#s.steps + 1] = step
        s.values[#s.values + 1] = v
      end
    end
  end
  table.sort(names)
  local main = M.main_metric(names)
  local ordered = { main }
  for _, n in ipairs(names) do
    if n ~= main then ordered[#ordered + 1] = n end
  end
  if main == nil then ordered = {} end
  return series, ordered, main
end

local function build_timings(rows, series, names)
  local t = { durations = {} }
  local times = {}
  for _, row in ipairs(rows) do
    if is_finite(row.time) then times[#times + 1] = row.time end
  end
  if #times >= 2 then
    t.wall_s = times[#times] - times[1]
    local gaps = {}
    for i = 2, #times do gaps[#gaps + 1] = times[i] - times[i - 1] end
    t.step_interval = stats(gaps)
  end
  for _, n in ipairs(names) do
    if is_duration(n) then t.durations[#t.durations + 1] = { name = n, stats = stats(series[n].values) } end
  end
  return t
end

function M.load(dir)
  if type(dir) ~= "string" or dir == "" then error("flare.report.load: a run directory is required", 2) end
  dir = dir:gsub("/+$", "")
  local config_text = read_file(dir .. "/config.json")
  local rows = read_jsonl(dir .. "/metrics.jsonl")
  if config_text == nil and rows == nil then
    error(dir .. " is not a run directory: it has neither config.json nor metrics.jsonl", 0)
  end
  local config = {}
  if config_text then
    local ok, value = pcall(json().decode, config_text)
    if not ok then error(dir .. "/config.json: " .. tostring(value), 0) end
    if type(value) ~= "table" then error(dir .. "/config.json: expected a JSON object", 0) end
    config = value
  end
  rows = rows or {}
  local series, names, main = build_series(rows)
  local run = {
    dir = dir,
    name = type(config.name) == "string" and config.name or dir:match("([^/]+)/[^/]+$") or dir,
    config = config,
    rows = rows,
    series = series,
    metric_names = names,
    main_metric = main,
    checkpoints = read_jsonl(dir .. "/checkpoints.jsonl") or {},
  }
  run.timings = build_timings(rows, series, names)
  return run
end

-- Numbers as people read them on an axis or in a table.
local function fmt(v)
  if v == nil then return "-" end
  if v == math.floor(v) and math.abs(v) < 1e9 then return string.format("%d", v) end
  local a = math.abs(v)
  if a >= 1e5 or a < 1e-3 then return string.format("%.3g", v) end
  return (string.format("%.4f", v):gsub("0+$", ""):gsub("%.$", ""))
end
M.format_number = fmt

local function fmt_duration(s)
  if s == nil then return "-" end
  if s < 60 then return string.format("%.1f s", s) end
  s = math.floor(s + 0.5)
  if s < 3600 then return string.format("%d:%02d", s / 60, s % 60) end
  return string.format("%d:%02d:%02d", s / 3600, s % 3600 / 60, s % 60)
end

local function range_of(list)
  local lo, hi = math.huge, -math.huge
  for _, v in ipairs(list) do
    if v < lo then lo = v end
    if v > hi then hi = v end
  end
  return lo, hi
end

-- A range that is never empty: a constant series gets room around it.
local function padded_range(lo, hi)
  if hi > lo then return lo, hi end
  local pad = math.abs(lo) * 0.1
  if pad == 0 then pad = 1 end
  return lo - pad, hi + pad
end

local function nice_ticks(lo, hi, count)
  local raw = (hi - lo) / count
  local mag = 10 ^ math.floor(math.log10(raw))
  local norm = raw / mag
  local step = (norm < 1.5 and 1 or norm < 3 and 2 or norm < 7 and 5 or 10) * mag
  local ticks = {}
  local v = math.ceil(lo / step - 1e-9) * step
  while v <= hi + step * 1e-9 do
    ticks[#ticks + 1] = math.abs(v) < step * 1e-9 and 0 or v
    v = v + step
  end
  return ticks
end
M.nice_ticks = nice_ticks

-- ---------------------------------------------------------------------------
-- HTML

local palette = { "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf" }
M.palette = palette

local function esc(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }))
end

local function svg_plot(name, s, color)
  local W, H, ml, mr, mt, mb = 520, 250, 62, 18, 16, 40
  local pw, ph = W - ml - mr, H - mt - mb
  local xlo, xhi = padded_range(range_of(s.steps))
  local ylo, yhi = range_of(s.values)
  local span = yhi - ylo
  ylo, yhi = padded_range(ylo - span * 0.05, yhi + span * 0.05)
  local function px(x) return ml + (x - xlo) / (xhi - xlo) * pw end
  local function py(y) return mt + (1 - (y - ylo) / (yhi - ylo)) * ph end
  local out = {}
  local function add(...) for i = 1, select("#", ...) do out[#out + 1] = select(i, ...) end end
  add(string.format('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">',
    W, H, W, H, esc(name)))
  add(string.format('<rect x="%d" y="%d" width="%d" height="%d" fill="#fff" stroke="#ccc"/>', ml, mt, pw, ph))
  for _, t in ipairs(nice_ticks(ylo, yhi, 5)) do
    local y = py(t)
    add(string.format('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/>', ml, ml + pw, y, y))
    add(string.format('<text x="%d" y="%.1f" text-anchor="end" class="tick">%s</text>', ml - 6, y + 4, esc(fmt(t))))
  end
  for _, t in ipairs(nice_ticks(xlo, xhi, 6)) do
    local x = px(t)
    add(string.format('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#eee"/>', x, x, mt, mt + ph))
    add(string.format('<text x="%.1f" y="%d" text-anchor="middle" class="tick">%s</text>', x, mt + ph + 16, esc(fmt(t))))
  end
  add(string.format('<text x="%d" y="%d" text-anchor="middle" class="axis">step</text>', ml + pw / 2, H - 4))
  if #s.values == 1 then
    add(string.format('<circle cx="%.1f" cy="%.1f" r="4" fill="%s"/>', px(s.steps[1]), py(s.values[1]), color))
  else
    local pts = {}
    for i = 1, #s.values do pts[i] = string.format("%.1f,%.1f", px(s.steps[i]), py(s.values[i])) end
    add(string.format('<polyline fill="none" stroke="%s" stroke-width="2.5" stroke-linejoin="round" points="%s"/>',
      color, table.concat(pts, " ")))
  end
  add("</svg>")
  return table.concat(out)
end
M.svg_plot = svg_plot

local style = [[
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px}
.meta{color:#666;margin:0}.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:14px}
figure{margin:0;background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px}
figcaption{font-weight:600;margin-bottom:2px}figcaption span{font-weight:400;color:#666;margin-left:8px}
svg text{font:11px system-ui,sans-serif;fill:#555}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:4px 10px;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
pre{background:#fff;border:1px solid #ddd;padding:10px;overflow:auto;max-height:480px}
]]

local function table_html(head, rows)
  local out = { "<table>" }
  if head then
    out[#out + 1] = "<tr>"
    for _, h in ipairs(head) do out[#out + 1] = "<th>" .. esc(h) .. "</th>" end
    out[#out + 1] = "</tr>"
  end
  for _, r in ipairs(rows) do
    out[#out + 1] = "<tr>"
    for _, c in ipairs(r) do out[#out + 1] = "<td>" .. esc(c) .. "</td>" end
    out[#out + 1] = "</tr>"
  end
  out[#out + 1] = "</table>"
  return table.concat(out)
end

local function checkpoint_rows(checkpoints)
  local keys, seen = {}, {}
  for _, c in ipairs(checkpoints) do
    for k, v in pairs(c) do
      if type(k) == "string" and not seen[k] and k ~= "state" and type(v) ~= "table" then
        seen[k] = true
        keys[#keys + 1] = k
      end
    end
  end
  table.sort(keys, function(a, b)
    if a == "step" or b == "step" then return a == "step" end
    return a < b
  end)
  local rows = {}
  local first = math.max(1, #checkpoints - 19)
  for i = first, #checkpoints do
    local r = {}
    for j, k in ipairs(keys) do
      local v = checkpoints[i][k]
      if k == "time" and is_finite(v) then v = os.date("!%Y-%m-%d %H:%M:%S", math.floor(v)) end
      r[j] = type(v) == "number" and fmt(v) or (v == nil and "" or tostring(v))
    end
    rows[#rows + 1] = r
  end
  return keys, rows
end

function M.render_html(run)
  local cfg = run.config or {}
  local out = {}
  local function add(s) out[#out + 1] = s end
  add('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">')
  add("<title>flare report: " .. esc(run.name) .. "</title><style>" .. style .. "</style></head><body>")
  add("<header><h1>" .. esc(run.name) .. "</h1><p class=\"meta\">" .. esc(run.dir))
  for _, k in ipairs({ "created_at", "flare_version", "seed", "script_sha256" }) do
    if cfg[k] ~= nil and type(cfg[k]) ~= "table" then add(" &middot; " .. esc(k) .. " " .. esc(cfg[k])) end
  end
  add("</p></header>")

  local steps = 0
  for _, name in ipairs(run.metric_names) do steps = math.max(steps, #run.series[name].values) end
  local summary = {
    { "metrics lines", tostring(#run.rows) },
    { "points in the longest series", tostring(steps) },
    { "wall time", fmt_duration(run.timings.wall_s) },
    { "checkpoints", tostring(#run.checkpoints) },
  }
  if run.main_metric then
    local st = stats(run.series[run.main_metric].values)
    summary[#summary + 1] = { run.main_metric .. " first / last / max",
      fmt(st.first) .. " / " .. fmt(st.last) .. " / " .. fmt(st.max) }
  end
  add("<h2>Summary</h2>" .. table_html(nil, summary))

  add("<h2>Metrics</h2>")
  if #run.metric_names == 0 then
    add("<p>No numeric metrics in metrics.jsonl yet.</p>")
  else
    add('<div class="grid">')
    for i, name in ipairs(run.metric_names) do
      local s = run.series[name]
      local st = stats(s.values)
      add("<figure><figcaption>" .. esc(name) .. "<span>last " .. esc(fmt(st.last)) .. " &middot; min " ..
        esc(fmt(st.min)) .. " &middot; max " .. esc(fmt(st.max)) .. " &middot; " .. #s.values ..
        " points</span></figcaption>")
      add(svg_plot(name, s, palette[(i - 1) % #palette + 1]))
      add("</figure>")
    end
    add("</div>")
  end

  add("<h2>Timings</h2>")
  local trows = {}
  if run.timings.step_interval then
    local st = run.timings.step_interval
    trows[#trows + 1] = { "between metrics lines (s)", fmt(st.mean), fmt(st.p50), fmt(st.p90), fmt(st.max), fmt(st.total) }
  end
  for _, d in ipairs(run.timings.durations) do
    local st = d.stats
    trows[#trows + 1] = { d.name, fmt(st.mean), fmt(st.p50), fmt(st.p90), fmt(st.max), fmt(st.total) }
  end
  if #trows == 0 then
    add("<p>No timings recorded (metrics ending in _s, _seconds or _ms, or a time field).</p>")
  else
    add(table_html({ "", "mean", "median", "p90", "max", "total" }, trows))
  end

  if #run.checkpoints > 0 then
    local keys, rows = checkpoint_rows(run.checkpoints)
    add("<h2>Checkpoints</h2>")
    if #run.checkpoints > #rows then add("<p>The last " .. #rows .. " of " .. #run.checkpoints .. ".</p>") end
    add(table_html(keys, rows))
  end

  add("<h2>Config</h2><pre>" .. esc(json().encode(cfg, { pretty = true, sort_keys = true })) .. "</pre>")
  add("<footer><p class=\"meta\">flare report &middot; flare " .. esc(rawget(_G, "flare") and flare.version or "?") ..
    " &middot; " .. esc(os.date("!%Y-%m-%d %H:%M:%S UTC")) .. "</p></footer></body></html>\n")
  return table.concat(out, "\n")
end

function M.write_html(run, path)
  path = path or (run.dir .. "/report.html")
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then error("cannot write " .. path .. ": " .. tostring(err), 0) end
  f:write(M.render_html(run))
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then
    os.remove(tmp)
    error("cannot write " .. path .. ": " .. tostring(rerr), 0)
  end
  return path
end

-- ---------------------------------------------------------------------------
-- Terminal

local function utf8_char(cp)
  if cp < 0x80 then return string.char(cp) end
  if cp < 0x800 then return string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64) end
  return string.char(0xE0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
end

-- Braille dot bits by (column 0..1, row 0..3) inside one character cell.
local dot_bits = { [0] = { [0] = 0x01, 0x02, 0x04, 0x40 }, [1] = { [0] = 0x08, 0x10, 0x20, 0x80 } }

local function normalize_series(series)
  local steps, values = {}, {}
  if type(series) ~= "table" then error("term_chart: expected {steps=, values=} or a list of numbers", 3) end
  local src_steps, src_values = series.steps, series.values
  if src_values == nil then src_values = series end
  for i, v in ipairs(src_values) do
    local x = src_steps and src_steps[i] or i
    if is_finite(v) and is_finite(x) then
      steps[#steps + 1] = x
      values[#values + 1] = v
    end
  end
  return steps, values
end

function M.term_chart(series, opts)
  opts = opts or {}
  local width = math.max(8, math.floor(opts.width or 60))
  local height = math.max(2, math.floor(opts.height or 8))
  local steps, values = normalize_series(series)
  local title = opts.title
  if #values == 0 then return (title and title .. "\n" or "") .. "(no data)" end
  local st = stats(values)
  local head = (title or "") .. (title and "  " or "") .. "last " .. fmt(st.last) .. "  min " .. fmt(st.min) ..
    "  max " .. fmt(st.max) .. "  (" .. #values .. (#values == 1 and " point)" or " points)")
  local cols, rows = width * 2, height * 4
  local xlo, xhi = padded_range(range_of(steps))
  if #values == 1 then xlo, xhi = steps[1] - 1, steps[1] + 1 end
  local ylo, yhi = padded_range(st.min, st.max)
  local cells = {}
  local function plot(c, r)
    if c < 0 or c >= cols or r < 0 or r >= rows then return end
    local cell = math.floor(r / 4) * width + math.floor(c / 2)
    cells[cell] = bit.bor(cells[cell] or 0, dot_bits[c % 2][r % 4])
  end
  local function to_dot(i)
    local c = math.floor((steps[i] - xlo) / (xhi - xlo) * (cols - 1) + 0.5)
    local r = (rows - 1) - math.floor((values[i] - ylo) / (yhi - ylo) * (rows - 1) + 0.5)
    return c, r
  end
  local pc, pr = to_dot(1)
  plot(pc, pr)
  for i = 2, #values do
    local c, r = to_dot(i)
    local n = math.max(math.abs(c - pc), math.abs(r - pr), 1)
    for k = 1, n do plot(math.floor(pc + (c - pc) * k / n + 0.5), math.floor(pr + (r - pr) * k / n + 0.5)) end
    pc, pr = c, r
  end
  local top, bottom = fmt(yhi), fmt(ylo)
  local label_w = math.max(#top, #bottom)
  local on, off = "", ""
  if opts.color then on, off = "\27[36m", "\27[0m" end
  local lines = { head }
  for row = 0, height - 1 do
    local label = row == 0 and top or (row == height - 1 and bottom or "")
    local chars = {}
    for c = 0, width - 1 do chars[#chars + 1] = utf8_char(0x2800 + (cells[row * width + c] or 0)) end
    lines[#lines + 1] = string.rep(" ", label_w - #label) .. label .. (label ~= "" and " ┤" or " │") .. on ..
      table.concat(chars) .. off
  end
  lines[#lines + 1] = string.rep(" ", label_w + 1) .. "└" .. string.rep("─", width)
  local left, right = "step " .. fmt(steps[1]), fmt(steps[#steps])
  lines[#lines + 1] = string.rep(" ", label_w + 2) .. left .. string.rep(" ", math.max(1, width - #left - #right)) .. right
  return table.concat(lines, "\n")
end

local spark = { "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█" }

-- One line of block characters: values averaged into `width` buckets.
function M.sparkline(values, width)
  width = width or 24
  if #values == 0 then return "" end
  local n = math.min(width, #values)
  local buckets = {}
  for b = 1, n do
    local from = math.floor((b - 1) * #values / n) + 1
    local to = math.max(from, math.floor(b * #values / n))
    local sum = 0
    for i = from, to do sum = sum + values[i] end
    buckets[b] = sum / (to - from + 1)
  end
  local lo, hi = range_of(buckets)
  local out = {}
  for b = 1, n do
    local level = hi > lo and math.floor((buckets[b] - lo) / (hi - lo) * 7 + 0.5) + 1 or 4
    out[b] = spark[level]
  end
  return table.concat(out)
end

function M.term_summary(run, opts)
  opts = opts or {}
  local lines = { "run " .. run.name .. " (" .. run.dir .. ")  " .. #run.rows .. " metrics lines, wall time " ..
    fmt_duration(run.timings.wall_s) }
  if not run.main_metric then
    lines[#lines + 1] = "no numeric metrics yet"
    return table.concat(lines, "\n")
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = M.term_chart(run.series[run.main_metric], { title = run.main_metric, width = opts.width,
    height = opts.height, color = opts.color })
  if #run.metric_names > 1 then
    lines[#lines + 1] = ""
    local name_w = 0
    for _, n in ipairs(run.metric_names) do name_w = math.max(name_w, #n) end
    for i = 2, #run.metric_names do
      local n = run.metric_names[i]
      local st = stats(run.series[n].values)
      lines[#lines + 1] = string.format("%-" .. name_w .. "s  %s  last %s  min %s  max %s", n,
        M.sparkline(run.series[n].values, 24), fmt(st.last), fmt(st.min), fmt(st.max))
    end
  end
  return table.concat(lines, "\n")
end

-- `flare report [--term] [--out FILE] RUN_DIR`: returns the text to print.
function M.cli(opts)
  local run = M.load(opts.dir)
  if opts.term then return M.term_summary(run, { color = opts.color }) end
  return "wrote " .. M.write_html(run, opts.out)
end

-- Arguments are checked before each call (a misuse raises invalid_argument naming the field).
return require("flare.args").checked(M, "flare.report", {
  read_jsonl = {"path:string"},
  main_metric = {"names:table"},
  stats = {"values:table"},
  load = {"dir:string"},
  format_number = {"v:nil|number"},
  nice_ticks = {"lo:number", "hi:number", "count:nil|number"},
  svg_plot = {"name:string", "series:table", "color:nil|string"},
  render_html = {"run:table"},
  write_html = {"run:table", "path:nil|string"},
  term_chart = {"series:table", {"opts", {width = "number", height = "number", title = "string", color = "boolean"}}},
  sparkline = {"values:table", "width:nil|number"},
  term_summary = {"run:table", {"opts", {width = "number", height = "number", color = "boolean"}}},
  cli = {{"opts", {dir = "string", out = "string", term = "boolean", color = "boolean"}}},
})
