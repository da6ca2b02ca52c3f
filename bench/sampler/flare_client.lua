-- flare's DeploymentSampler driving N one-token completions at a fixed concurrency.
-- usage: flare run flare_client.lua BASE_URL API_KEY MODEL REQUESTS CONCURRENCY [plain|stream]
-- prints: requests wall_s cpu_s errors
local base, key, model, requests, concurrency = arg[1], arg[2], arg[3], tonumber(arg[4]),
  tonumber(arg[5])
local stream = arg[6] == "stream"

local function cpu_seconds()
  local f = io.open("/proc/self/stat")
  local stat = f:read("*a")
  f:close()
  -- Fields after the parenthesised command name: utime and stime are the 12th and 13th.
  local rest = stat:match("%) (.*)$")
  local fields = {}
  for x in rest:gmatch("%S+") do fields[#fields + 1] = x end
  local ticks = 100  -- USER_HZ on Linux
  return (tonumber(fields[12]) + tonumber(fields[13])) / ticks
end

local fw = flare.connect{api_key = key, base_url = base, account_id = "local", quiet = true}
local sampler = fw:sampler{model = model, concurrency = concurrency, stream = stream}
local prompts = {}
for i = 1, requests do prompts[i] = {1, 2} end
-- Warm the connections up.
local warm = {}
for i = 1, concurrency do warm[i] = {1, 2} end
sampler:sample{prompts = warm, max_tokens = 1}
local c0, t0 = cpu_seconds(), flare.clock()
local groups = sampler:sample{prompts = prompts, n = 1, max_tokens = 1, temperature = 1.0,
  on_error = "return"}
local wall, cpu = flare.clock() - t0, cpu_seconds() - c0
local errors = 0
for _, g in ipairs(groups) do if g[1].error then errors = errors + 1 end end
print(string.format("%d %.4f %.4f %d", requests, wall, cpu, errors))
