-- flare.format: numbers, durations and sparklines as the recipe's progress line and
-- flare.report show them.
--
--   format.number(v) -> "12", "0.0314", "1.2e+06", "-" for nil
--   format.duration(seconds) -> "4.2 s", "3:07", "1:02:03", "-" for nil
--   format.sparkline(values, {width =, lo =, hi =}) -> "▁▂▄▆█"
local M = {}

function M.number(v)
  if v == nil then return "-" end
  if v == math.floor(v) and math.abs(v) < 1e9 then return string.format("%d", v) end
  local a = math.abs(v)
  if a >= 1e5 or a < 1e-3 then return string.format("%.3g", v) end
  return (string.format("%.4f", v):gsub("0+$", ""):gsub("%.$", ""))
end

function M.duration(s)
  if s == nil then return "-" end
  s = math.max(0, s)
  if s < 60 then return string.format("%.1f s", s) end
  s = math.floor(s + 0.5)
  if s < 3600 then return string.format("%d:%02d", s / 60, s % 60) end
  return string.format("%d:%02d:%02d", s / 3600, s % 3600 / 60, s % 60)
end

local blocks = { "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█" }

-- One block per value, or values averaged into `width` buckets when there are more.
-- The range is lo..hi (default: the values' own); a flat series sits in the middle.
function M.sparkline(values, opts)
  opts = opts or {}
  if #values == 0 then return "" end
  local n = math.min(opts.width or #values, #values)
  local buckets = {}
  for b = 1, n do
    local from = math.floor((b - 1) * #values / n) + 1
    local to = math.max(from, math.floor(b * #values / n))
    local sum = 0
    for i = from, to do sum = sum + values[i] end
    buckets[b] = sum / (to - from + 1)
  end
  local lo, hi = opts.lo, opts.hi
  if lo == nil then lo = math.huge; for _, v in ipairs(buckets) do lo = math.min(lo, v) end end
  if hi == nil then hi = -math.huge; for _, v in ipairs(buckets) do hi = math.max(hi, v) end end
  local out = {}
  for b = 1, n do
    local level = 4
    if hi > lo then
      local f = (buckets[b] - lo) / (hi - lo)
      level = math.max(1, math.min(8, math.floor(f * 7 + 0.5) + 1))
    end
    out[b] = blocks[level]
  end
  return table.concat(out)
end

-- Arguments are checked before each call (a misuse raises invalid_argument naming the field).
return require("flare.args").checked(M, "flare.format", {
  number = {"v:nil|number"},
  duration = {"seconds:nil|number"},
  sparkline = {"values:table", {"opts", {width = "number", lo = "number", hi = "number"}}},
})
