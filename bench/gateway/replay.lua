-- The load replayer: `flare traffic replay`'s open loop at rising target rates through
-- `flare gateway` (a separate process) to the in-process emulator, and the same rates direct
-- to the emulator; prints target and achieved rates, statuses and latency percentiles.
--   build/flare run bench/gateway/replay.lua [SECONDS] [RATE,RATE,...]
local release = require("flare.release")
local traffic = require("flare.release.traffic")
local gateway = require("flare.release.gateway")
local fs = require("flare.fs")
local seconds = tonumber(arg[1]) or 3
local rates = {}
for r in (arg[2] or "100,400,1600"):gmatch("[^,]+") do rates[#rates + 1] = tonumber(r) end
local BASE = "accounts/local/models/tiny-gpt"
local dir = os.tmpname()
os.remove(dir)
fs.mkdir_p(dir)
local reg = dir .. "/registry.sqlite"
local em = flare.emulator.start{provision_delay_s = 0.05}
local fw = flare.connect{base_url = em:base_url(), api_key = em:api_key(), quiet = true}
local info = fw.deployments:create_or_get{deployment_id = "rp-v1", base_model = BASE,
  min_replica_count = 1, max_replica_count = 1}
fw.deployments:wait_for_ready(info.deployment_id, {poll_interval_s = 0.05, timeout_s = 60})
local model = "accounts/" .. fw.account_id .. "/deployments/rp-v1"
local v = release.register{family = "rp", base_model = BASE, snapshot = "rp-v1",
  weights_sha256 = fs.sha256("rp-v1"), registry = reg}
release.set_endpoint(v.id, {base_url = fw.inference_url, model = model, registry = reg})
release.set_production(v.id, {reason = "bench", force = true, registry = reg})
local gw = gateway.spawn{family = "rp", registry = reg, dir = dir .. "/gw"}
flare.defer(function() gw.stop(); em:stop(); fs.remove(dir, {recursive = true}) end)
local prompts = traffic.write_prompts(dir .. "/prompts.jsonl", {tasks = {"sort", "vowels"},
  n = 200, seed = 1})
print(string.format("%-8s %7s %9s %9s %8s %8s %8s  %s", "PATH", "TARGET", "ACHIEVED", "ANSWERED",
  "P50 MS", "P95 MS", "P99 MS", "STATUSES"))
for _, rate in ipairs(rates) do
  for _, path in ipairs({{"direct", fw.inference_url}, {"gateway", gw.url}}) do
    local r = traffic.replay{prompts = prompts, url = path[2], rate = rate, duration_s = seconds,
      max_tokens = 4, api_key = em:api_key(), model = model}
    local st = {}
    for k, n in pairs(r.statuses) do st[#st + 1] = k .. ":" .. n end
    table.sort(st)
    print(string.format("%-8s %7g %9.1f %9d %8.2f %8.2f %8.2f  %s", path[1], rate,
      r.achieved_rate, r.answered, r.p50_ms or 0, r.p95_ms or 0, r.p99_ms or 0,
      table.concat(st, " ")))
  end
end
