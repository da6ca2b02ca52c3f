-- lua-cjson's side of bench/json (run by flare, or luajit): decode every line of FILE, best of
-- REPEAT.
local path, repeat_n = arg[1], tonumber(arg[2]) or 3
local cjson = require("cjson")
local f = assert(io.open(path, "rb"))
local text = f:read("*a")
f:close()
local clock = os.clock
local t_best, rows = math.huge, 0
for _ = 1, repeat_n do
  collectgarbage()
  local t0 = clock()
  local out, decode = {}, cjson.decode
  for line in text:gmatch("[^\n]+") do out[#out + 1] = decode(line) end
  rows = #out
  t_best = math.min(t_best, clock() - t0)
end
print(string.format("cjson %.4f %d", t_best, rows))
