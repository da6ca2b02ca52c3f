-- flare.release.gate_html: a gate report as one self-contained HTML page: a bar per slice
-- (the candidate's change against the baseline) with its bootstrap 95% CI and the slice's
-- regression threshold, then each gate's numbers.
local html = require("flare.report.html")

local M = {}
local esc, table_html = html.esc, html.table_html

local function bars(report)
  local rows = {{name = "aggregate", diff = report.aggregate.diff, ci_lo = report.aggregate.ci_lo,
    ci_hi = report.aggregate.ci_hi, threshold = -report.aggregate.margin,
    passed = report.gates[1].passed}}
  for _, s in ipairs(report.slices) do rows[#rows + 1] = s end
  local lo, hi = 0, 0
  for _, r in ipairs(rows) do
    lo = math.min(lo, r.ci_lo or r.diff, -(r.threshold or 0))
    hi = math.max(hi, r.ci_hi or r.diff, -(r.threshold or 0))
  end
  local pad = math.max((hi - lo) * 0.08, 0.01)
  lo, hi = lo - pad, hi + pad
  local W, row_h, ml, mr, mt = 720, 30, 170, 20, 24
  local H = mt + row_h * #rows + 30
  local pw = W - ml - mr
  local function x(v) return ml + (v - lo) / (hi - lo) * pw end
  local out = {string.format('<svg width="%d" height="%d" viewBox="0 0 %d %d" ' ..
    'xmlns="http://www.w3.org/2000/svg" role="img">', W, H, W, H)}
  local function add(s) out[#out + 1] = s end
  for _, t in ipairs(html.nice_ticks(lo, hi, 6)) do
    add(string.format('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/>', x(t), mt - 6,
      x(t), H - 24))
    add(string.format('<text x="%.1f" y="%d" text-anchor="middle">%+.2f</text>', x(t), H - 8, t))
  end
  add(string.format('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#333"/>', x(0), mt - 8,
    x(0), H - 24))
  for i, r in ipairs(rows) do
    local y = mt + (i - 1) * row_h
    local color = r.passed and "#2ca02c" or "#d62728"
    add(string.format('<text x="%d" y="%d" text-anchor="end">%s%s</text>', ml - 8, y + 18,
      esc(r.name), r.safety_critical and " (safety)" or ""))
    local x0, x1 = x(math.min(0, r.diff)), x(math.max(0, r.diff))
    add(string.format('<rect x="%.1f" y="%d" width="%.1f" height="16" fill="%s" opacity="0.75">' ..
      '<title>%s: %+.4f (95%% CI %+.4f .. %+.4f)</title></rect>', x0, y + 6, math.max(x1 - x0, 1),
      color, esc(r.name), r.diff, r.ci_lo or r.diff, r.ci_hi or r.diff))
    if r.ci_lo then
      add(string.format('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#222" ' ..
        'stroke-width="1.5"/>', x(r.ci_lo), y + 14, x(r.ci_hi), y + 14))
      for _, v in ipairs({r.ci_lo, r.ci_hi}) do
        add(string.format('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#222"/>', x(v), y + 9,
          x(v), y + 19))
      end
    end
    if r.threshold and r.threshold ~= 0 then
      add(string.format('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ff7f0e" ' ..
        'stroke-dasharray="3,2" stroke-width="2"><title>threshold %+.4f</title></line>',
        x(-r.threshold), y + 3, x(-r.threshold), y + 25, -r.threshold))
    end
  end
  add("</svg>")
  return table.concat(out)
end

function M.render(report)
  local out = {'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>gate: ',
    esc(report.candidate or "candidate"), "</title><style>", html.style,
    ".pass{color:#2ca02c;font-weight:600}.fail{color:#d62728;font-weight:600}</style></head><body>"}
  local function add(s) out[#out + 1] = s end
  add("<header><h1>Gate " .. (report.passed and '<span class="pass">passed</span>' or
    '<span class="fail">failed</span>') .. ": " .. esc(report.candidate or "candidate") .. " vs " ..
    esc(report.baseline or "baseline") .. "</h1>")
  add('<p class="meta">suite ' .. esc(report.suite_name or "") .. " " .. esc(report.suite_id) ..
    " &middot; " .. report.n .. " items &middot; metric " .. esc(report.metric) ..
    " &middot; paired bootstrap, " .. report.bootstrap.resamples .. " resamples, seed " ..
    report.bootstrap.seed .. "</p></header>")
  add("<h2>Change against the baseline, per slice (bars: difference of means; whiskers: 95% CI; " ..
    "dashed: the most a slice may regress)</h2>")
  add("<figure>" .. bars(report) .. "</figure>")
  local rows = {}
  for _, g in ipairs(report.gates) do rows[#rows + 1] = {g.name, g.passed and "pass" or "FAIL",
    g.detail} end
  add("<h2>Gates</h2>" .. table_html({"gate", "result", "numbers"}, rows))
  local srows = {}
  local a = report.aggregate
  srows[1] = {"aggregate", tostring(report.n), string.format("%.4f", a.baseline),
    string.format("%.4f", a.candidate), string.format("%+.4f", a.diff),
    string.format("%+.4f .. %+.4f", a.ci_lo, a.ci_hi), string.format(">= %+.4f", a.margin)}
  for _, s in ipairs(report.slices) do
    srows[#srows + 1] = {s.name .. (s.safety_critical and " (safety)" or ""), tostring(s.n),
      string.format("%.4f", s.baseline), string.format("%.4f", s.candidate),
      string.format("%+.4f", s.diff), string.format("%+.4f .. %+.4f", s.ci_lo, s.ci_hi),
      string.format(">= %+.4f", -s.threshold)}
  end
  add("<h2>Slices</h2>" .. table_html({"slice", "n", "baseline", "candidate", "diff", "95% CI",
    "allowed"}, srows))
  add("</body></html>\n")
  return table.concat(out)
end

return M
