-- flare.report.term: a run on the terminal.
--
--   term.term_chart(series, opts) -> string: a braille chart of one series
--       series: {steps =, values =} or a list of numbers; opts: width (60), height (8),
--       title, color (false)
--   term.term_summary(run, opts) -> string: the main metric's chart and a sparkline line
--       per other metric
local format = require("flare.format")
local load = require("flare.report.load")

local M = {}

local fmt, fmt_duration = format.number, format.duration
local stats, is_finite = load.stats, load.is_finite
local range_of, padded_range = load.range_of, load.padded_range

local function utf8_char(cp)
  if cp < 0x80 then return string.char(cp) end
  if cp < 0x800 then return string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64) end
  return string.char(0xE0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
end

-- Braille dot bits by (column 0..1, row 0..3) inside one character cell.
local dot_bits = { [0] = { [0] = 0x01, 0x02, 0x04, 0x40 }, [1] = { [0] = 0x08, 0x10, 0x20, 0x80 } }

local function normalize_series(series)
  local steps, values = {}, {}
  if type(series) ~= "table" then
    error("term_chart: expected {steps=, values=} or a list of numbers", 3)
  end
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
  local head = (title or "") .. (title and "  " or "") .. "last " .. fmt(st.last) ..
    "  min " .. fmt(st.min) .. "  max " .. fmt(st.max) ..
    "  (" .. #values .. (#values == 1 and " point)" or " points)")
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
    for k = 1, n do
      plot(math.floor(pc + (c - pc) * k / n + 0.5), math.floor(pr + (r - pr) * k / n + 0.5))
    end
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
    for c = 0, width - 1 do
      chars[#chars + 1] = utf8_char(0x2800 + (cells[row * width + c] or 0))
    end
    lines[#lines + 1] = string.rep(" ", label_w - #label) .. label ..
      (label ~= "" and " ┤" or " │") .. on .. table.concat(chars) .. off
  end
  lines[#lines + 1] = string.rep(" ", label_w + 1) .. "└" .. string.rep("─", width)
  local left, right = "step " .. fmt(steps[1]), fmt(steps[#steps])
  lines[#lines + 1] = string.rep(" ", label_w + 2) .. left ..
    string.rep(" ", math.max(1, width - #left - #right)) .. right
  return table.concat(lines, "\n")
end

function M.term_summary(run, opts)
  opts = opts or {}
  local lines = { "run " .. run.name .. " (" .. run.dir .. ")  " .. #run.rows ..
    " metrics lines, wall time " .. fmt_duration(run.timings.wall_s) }
  if not run.main_metric then
    lines[#lines + 1] = "no numeric metrics yet"
    return table.concat(lines, "\n")
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = M.term_chart(run.series[run.main_metric],
    { title = run.main_metric, width = opts.width, height = opts.height, color = opts.color })
  if #run.metric_names > 1 then
    lines[#lines + 1] = ""
    local name_w = 0
    for _, n in ipairs(run.metric_names) do name_w = math.max(name_w, #n) end
    for i = 2, #run.metric_names do
      local n = run.metric_names[i]
      local st = stats(run.series[n].values)
      local spark = format.sparkline(run.series[n].values, { width = 24 })
      lines[#lines + 1] = string.format("%-" .. name_w .. "s  %s  last %s  min %s  max %s", n,
        spark, fmt(st.last), fmt(st.min), fmt(st.max))
    end
  end
  return table.concat(lines, "\n")
end

return M
