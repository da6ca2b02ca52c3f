-- flare's side of bench/json: decode every line of FILE, best of REPEAT runs.
-- Prints "decode_lines SECONDS ROWS" and "decode_per_line SECONDS ROWS".
local path, repeat_n = arg[1], tonumber(arg[2]) or 3
local text = assert(flare.fs.read_file(path))
local json = flare.json

local function best(fn)
  local t_best, rows = math.huge, 0
  for _ = 1, repeat_n do
    collectgarbage()
    local t0 = os.clock()
    rows = fn()
    t_best = math.min(t_best, os.clock() - t0)
  end
  return t_best, rows
end

io.stderr:write("flare.json parser: ", json.parser(), "\n")
local t, rows = best(function() return #json.decode_lines(text) end)
print(string.format("decode_lines %.4f %d", t, rows))
t, rows = best(function()
  local out, decode = {}, json.decode
  for line in text:gmatch("[^\n]+") do out[#out + 1] = decode(line) end
  return #out
end)
print(string.format("decode_per_line %.4f %d", t, rows))
