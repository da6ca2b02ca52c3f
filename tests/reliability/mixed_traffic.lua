-- Mixed traffic against a standalone `flare serve` for a while (10 minutes by default): sampling
-- in batches of hundreds of requests, a trainer training on them and a weight syncer hotloading
-- its snapshots (deltas, a base every 5th), and control-plane calls (list, get, scaling a second
-- deployment up and down) while the samples are in flight. Then the same checks as the load
-- test: every request answered (or retried to success), descriptors and memory of both
-- processes. Not part of the test command (README, Reliability, has the figures).
--
--   nice build/flare run tests/reliability/mixed_traffic.lua [--minutes=10] [--batch=120]
--
-- Exits 1 if a request failed, the client left a descriptor open, or the server's file (not
-- socket) descriptors grew.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. here .. "/../recipes/?.lua;" .. package.path
local stats = require("process_stats")
local e2e = require("e2e")
local fs = require("flare.fs")
local proc = require("flare.proc")
local grpo = require("flare.grpo")

local opts = {minutes = 10, batch = 120}
for _, a in ipairs(arg) do
  local k, v = a:match("^%-%-([%w_]+)=(.*)$")
  if opts[k] == nil or not tonumber(v) then
    error("unknown argument " .. a .. " (--minutes=N --batch=N)")
  end
  opts[k] = tonumber(v)
end

local BASE_MODEL = "accounts/local/models/tiny-gpt"
local dir = "/tmp/flare-mixed-" .. fs.getpid() .. "-" .. math.floor(flare.clock() * 1e6)
fs.mkdir_p(dir)
local probe = flare.emulator.start{state_dir = dir .. "/probe"}

-- Server descriptors by kind: sockets, and everything else (files, pipes, epoll, ...).
local function server_fds(pid)
  local sockets, other = 0, 0
  for _, line in ipairs(stats.fd_targets(pid)) do
    if line:find("-> socket:", 1, true) then sockets = sockets + 1 else other = other + 1 end
  end
  return {sockets = sockets, other = other}
end

local client_fds_before = stats.settle_client(probe)

local server = proc.spawn{argv = {"/bin/sh", "-c", 'exec "$0" serve --port 0 --state-dir "$1" ' ..
  '--provision-delay 0.1 > "$1/serve.out" 2>&1', e2e.flare_exe(), dir .. "/state"}}
fs.mkdir_p(dir .. "/state")
local url, key_path
e2e.wait_until("flare serve to print its URL", function()
  local text = fs.read_file(dir .. "/state/serve.out") or ""
  url, key_path = text:match("listening on (http://[%d.:]+)"), text:match("API key stored in (%S+)")
  return url ~= nil and key_path ~= nil
end, 60)
local server_pid = server:pid()

local failures = {}
local totals = {requests = 0, retries = 0, hotloads = 0, deltas = 0, cp_calls = 0, scales = 0,
  train_steps = 0, batches = 0}
local samples = {}  -- {t, client_rss, server_rss, server_sockets}
local server_fds_start, client_hwm, server_hwm

local ok, err = pcall(function()
  local key = assert(fs.read_file(key_path)):gsub("%s+$", "")
  local fw = flare.connect{base_url = url, api_key = key, quiet = true}
  local function ready(id)
    fw.deployments:create_or_get{deployment_id = id, base_model = BASE_MODEL,
      min_replica_count = 1, max_replica_count = 1}
    return fw.deployments:wait_for_ready(id, {poll_interval_s = 0.1, timeout_s = 120})
  end
  local info = ready("mixed")
  ready("mixed-cp")
  local trainer = fw:trainer{base_model = BASE_MODEL, learning_rate = 1e-3,
    hot_load_deployment_id = "mixed", job_id = "mixed-trainer"}
  local syncer = flare.weight_syncer{policy_client = trainer, deploy_mgr = fw.deployments,
    deployment_id = "mixed", base_model = BASE_MODEL, quiet = true}
  syncer:save_and_hotload("step-0")
  local sampler = fw:sampler{deployment = info, concurrency = opts.batch, on_error = "return",
    backoff_initial_s = 0.1, backoff_max_s = 2}
  local prompts = {}
  for i = 1, math.floor(opts.batch / 8) do prompts[i] = string.format("mixed %04d", i) end
  server_fds_start = server_fds(server_pid)

  local t0 = flare.clock()
  local stop_at = t0 + opts.minutes * 60
  local next_sample_t, step, scaled_up = t0, 0, true
  while flare.clock() < stop_at do
    totals.batches = totals.batches + 1
    local f = sampler:submit{prompts = prompts, n = 8, max_tokens = 8, seed = totals.batches,
      logprobs = true}
    -- Control plane while the batch is in flight.
    assert(#fw.deployments:list() >= 2, "list lost a deployment")
    assert(fw.deployments:get("mixed"), "get mixed")
    totals.cp_calls = totals.cp_calls + 2
    if totals.batches % 3 == 0 then
      if scaled_up then fw.deployments:scale_to_zero("mixed-cp")
      else fw.deployments:update("mixed-cp", {min_replica_count = 1, max_replica_count = 1}) end
      scaled_up = not scaled_up
      totals.scales = totals.scales + 1
      totals.cp_calls = totals.cp_calls + 1
    end
    local groups = f:wait()
    local rewards = {}
    for g, group in ipairs(groups) do
      rewards[g] = {}
      for i, c in ipairs(group) do
        totals.requests = totals.requests + 1
        if c.error then
          failures[#failures + 1] = string.format("batch %d: %s", totals.batches,
            tostring(c.error.message))
        end
        rewards[g][i] = ((c.tokens or {})[1] or 0) % 2  -- varies within a group: datums
      end
    end
    -- Every other batch: train on it and hotload (a base every 5th snapshot).
    if totals.batches % 2 == 0 and #failures == 0 then
      local datums = grpo.build_datums(groups, rewards)
      if #datums > 0 then
        trainer:forward_backward(datums, "importance_sampling")
        trainer:optim_step{learning_rate = 1e-3}
        totals.train_steps = totals.train_steps + 1
      end
      step = step + 1
      syncer:save_and_hotload("step-" .. step, step % 5 == 0 and "base" or nil)
      totals.hotloads = totals.hotloads + 1
      if step % 5 ~= 0 then totals.deltas = totals.deltas + 1 end
    end
    if flare.clock() >= next_sample_t then
      local cm, sm = stats.memory(), stats.memory(server_pid)
      samples[#samples + 1] = {t = flare.clock() - t0, client_rss = cm.rss_mb,
        server_rss = sm.rss_mb, server_sockets = server_fds(server_pid).sockets}
      next_sample_t = next_sample_t + 30
    end
  end
  totals.elapsed_s = flare.clock() - t0
  totals.retries = sampler:stats().retries
  trainer:close()
  fw.deployments:scale_to_zero("mixed")
  fw.deployments:scale_to_zero("mixed-cp")
end)
if not ok then failures[#failures + 1] = "run failed: " .. tostring(err) end

local server_fds_end = server_fds(server_pid)
server_hwm = stats.memory(server_pid).hwm_mb
server:kill(2)
local done = server:wait{timeout_s = 30}
local client_fds_after = stats.settle_client(probe)
client_hwm = stats.memory().hwm_mb

print(string.format("mixed traffic for %.1f min: %d sampling requests in %d batches " ..
  "(%.0f req/s, %d retries, %d failed), %d train steps, %d hotloads (%d deltas), " ..
  "%d control-plane calls (%d scalings)", (totals.elapsed_s or 0) / 60, totals.requests,
  totals.batches, totals.requests / math.max(totals.elapsed_s or 1, 1e-9), totals.retries,
  #failures,
  totals.train_steps, totals.hotloads, totals.deltas, totals.cp_calls, totals.scales))
for _, s in ipairs(samples) do
  print(string.format("  t=%5.0f s  client RSS %.1f MB  server RSS %.1f MB  server sockets %d",
    s.t, s.client_rss, s.server_rss, s.server_sockets))
end
print(string.format("peak RSS: client %.1f MB, server %.1f MB", client_hwm, server_hwm))
print(string.format("client descriptors: %d before, %d after the server stopped",
  client_fds_before, client_fds_after))
if server_fds_start then
  print(string.format("server descriptors: start %d sockets + %d other, end %d sockets + %d other",
    server_fds_start.sockets, server_fds_start.other, server_fds_end.sockets, server_fds_end.other))
end
print(string.format("flare serve exited with %s after SIGINT", tostring(done.status)))
if client_fds_after ~= client_fds_before then
  failures[#failures + 1] = "client descriptors changed"
end
if server_fds_start and server_fds_end.other ~= server_fds_start.other then
  failures[#failures + 1] = "server file descriptors changed"
end
if done.status ~= 0 then failures[#failures + 1] = "flare serve did not stop cleanly" end
probe:stop()
fs.remove(dir, {recursive = true})
for i = 1, math.min(#failures, 10) do print("FAILED: " .. failures[i]) end
os.exit(#failures == 0 and 0 or 1)
