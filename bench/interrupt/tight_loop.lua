-- The loop of the Ctrl-C report: one compiled trace, one add per iteration.
-- Prints the seconds it took (best of 3) for 500 million iterations.
local n = tonumber(arg and arg[1]) or 5e8
local best = math.huge
for _ = 1, 3 do
  local t0 = os.clock()
  local x = 0
  while x < n do x = x + 1 end
  best = math.min(best, os.clock() - t0)
end
print(string.format("%.4f", best))
