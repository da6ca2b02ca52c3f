-- flare.report.html: a run as one self-contained HTML page (inline SVG plots, no network).
--
--   html.render_html(run) -> string      html.write_html(run, path) -> path
--   html.svg_plot(name, series, color)   html.nice_ticks(lo, hi, count)   html.palette
local format = require("flare.format")
local load = require("flare.report.load")

local M = {}

local fmt, fmt_duration = format.number, format.duration
local stats, is_finite = load.stats, load.is_finite
local range_of, padded_range = load.range_of, load.padded_range

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

local palette = { "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
  "#e377c2", "#17becf" }
M.palette = palette

local function esc(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
    ['"'] = "&quot;", ["'"] = "&#39;" }))
end
M.esc = esc

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
  add(string.format('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" ' ..
    'height="%d" role="img" aria-label="%s">', W, H, W, H, esc(name)))
  add(string.format('<rect x="%d" y="%d" width="%d" height="%d" fill="#fff" stroke="#ccc"/>',
    ml, mt, pw, ph))
  for _, t in ipairs(nice_ticks(ylo, yhi, 5)) do
    local y = py(t)
    add(string.format('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/>',
      ml, ml + pw, y, y))
    add(string.format('<text x="%d" y="%.1f" text-anchor="end" class="tick">%s</text>',
      ml - 6, y + 4, esc(fmt(t))))
  end
  for _, t in ipairs(nice_ticks(xlo, xhi, 6)) do
    local x = px(t)
    add(string.format('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#eee"/>',
      x, x, mt, mt + ph))
    add(string.format('<text x="%.1f" y="%d" text-anchor="middle" class="tick">%s</text>',
      x, mt + ph + 16, esc(fmt(t))))
  end
  add(string.format('<text x="%d" y="%d" text-anchor="middle" class="axis">step</text>',
    ml + pw / 2, H - 4))
  if #s.values == 1 then
    add(string.format('<circle cx="%.1f" cy="%.1f" r="4" fill="%s"/>',
      px(s.steps[1]), py(s.values[1]), color))
  else
    local pts = {}
    for i = 1, #s.values do pts[i] = string.format("%.1f,%.1f", px(s.steps[i]), py(s.values[i])) end
    add(string.format('<polyline fill="none" stroke="%s" stroke-width="2.5" ' ..
      'stroke-linejoin="round" points="%s"/>', color, table.concat(pts, " ")))
  end
  add("</svg>")
  return table.concat(out)
end
M.svg_plot = svg_plot

local style = [[
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222;
background:#fafafa}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px}
.meta{color:#666;margin:0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:14px}
figure{margin:0;background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px}
figcaption{font-weight:600;margin-bottom:2px}
figcaption span{font-weight:400;color:#666;margin-left:8px}
svg text{font:11px system-ui,sans-serif;fill:#555}
table{border-collapse:collapse;background:#fff}
td,th{border:1px solid #ddd;padding:4px 10px;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
pre{background:#fff;border:1px solid #ddd;padding:10px;overflow:auto;max-height:480px}
]]
M.style = style

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
M.table_html = table_html

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
  add("<title>flare report: " .. esc(run.name) .. "</title><style>" .. style ..
    "</style></head><body>")
  add("<header><h1>" .. esc(run.name) .. "</h1><p class=\"meta\">" .. esc(run.dir))
  for _, k in ipairs({ "created_at", "flare_version", "seed", "script_sha256" }) do
    if cfg[k] ~= nil and type(cfg[k]) ~= "table" then
      add(" &middot; " .. esc(k) .. " " .. esc(cfg[k]))
    end
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
      add("<figure><figcaption>" .. esc(name) .. "<span>last " .. esc(fmt(st.last)) ..
        " &middot; min " .. esc(fmt(st.min)) .. " &middot; max " .. esc(fmt(st.max)) ..
        " &middot; " .. #s.values .. " points</span></figcaption>")
      add(svg_plot(name, s, palette[(i - 1) % #palette + 1]))
      add("</figure>")
    end
    add("</div>")
  end

  add("<h2>Timings</h2>")
  local trows = {}
  if run.timings.step_interval then
    local st = run.timings.step_interval
    trows[#trows + 1] = { "between metrics lines (s)", fmt(st.mean), fmt(st.p50), fmt(st.p90),
      fmt(st.max), fmt(st.total) }
  end
  for _, d in ipairs(run.timings.durations) do
    local st = d.stats
    trows[#trows + 1] = { d.name, fmt(st.mean), fmt(st.p50), fmt(st.p90), fmt(st.max),
      fmt(st.total) }
  end
  if #trows == 0 then
    add("<p>No timings recorded (metrics ending in _s, _seconds or _ms, or a time field).</p>")
  else
    add(table_html({ "", "mean", "median", "p90", "max", "total" }, trows))
  end

  if #run.checkpoints > 0 then
    local keys, rows = checkpoint_rows(run.checkpoints)
    add("<h2>Checkpoints</h2>")
    if #run.checkpoints > #rows then
      add("<p>The last " .. #rows .. " of " .. #run.checkpoints .. ".</p>")
    end
    add(table_html(keys, rows))
  end

  local config_json = require("flare.json").encode(cfg, { pretty = true, sort_keys = true })
  add("<h2>Config</h2><pre>" .. esc(config_json) .. "</pre>")
  add("<footer><p class=\"meta\">flare report &middot; flare " ..
    esc(rawget(_G, "flare") and flare.version or "?") .. " &middot; " ..
    esc(os.date("!%Y-%m-%d %H:%M:%S UTC")) .. "</p></footer></body></html>\n")
  return table.concat(out, "\n")
end

function M.write_html(run, path)
  path = path or (run.dir .. "/report.html")
  require("flare.fs").write_file_atomic(path, M.render_html(run))
  return path
end

return M
