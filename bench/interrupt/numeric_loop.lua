-- Nested numeric loops that compute something (the hook check competes with the
-- arithmetic for the CPU): a 200x200 matrix product, repeated. Seconds, best of 3.
local n, reps = 200, tonumber(arg and arg[1]) or 50
local a, b, c = {}, {}, {}
for i = 1, n do
  a[i], b[i], c[i] = {}, {}, {}
  for j = 1, n do a[i][j], b[i][j], c[i][j] = (i + j) % 7, (i * j) % 5, 0 end
end
local best = math.huge
for _ = 1, 3 do
  local t0 = os.clock()
  for _ = 1, reps do
    for i = 1, n do
      local ai, ci = a[i], c[i]
      for j = 1, n do
        local s = 0
        for k = 1, n do s = s + ai[k] * b[k][j] end
        ci[j] = s
      end
    end
  end
  best = math.min(best, os.clock() - t0)
end
print(string.format("%.4f", best))
