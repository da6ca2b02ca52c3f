-- Rollback time: from running `flare release rollback FAMILY` to every request answered by the
-- restored version, with `flare gateway` (a separate process, polling the registry every 0.2 s)
-- in front of two deployments of the in-process emulator and 16 requests in flight throughout.
--   build/flare run bench/gateway/rollback.lua [TRIALS]
local release = require("flare.release")
local fs = require("flare.fs")
local trials = tonumber(arg[1]) or 5
local BASE = "accounts/local/models/tiny-gpt"
local dir = os.tmpname()
os.remove(dir)
fs.mkdir_p(dir)
local reg = dir .. "/registry.sqlite"
local fw = flare.connect{backend = "emulator", provision_delay_s = 0.05, quiet = true}
for i, id in ipairs({"rb-v1", "rb-v2"}) do
  local info = fw.deployments:create_or_get{deployment_id = id, base_model = BASE,
    min_replica_count = 1, max_replica_count = 1}
  fw.deployments:wait_for_ready(info.deployment_id, {poll_interval_s = 0.05, timeout_s = 60})
  local v = release.register{family = "rb", base_model = BASE, snapshot = id,
    weights_sha256 = fs.sha256(id), registry = reg}
  release.set_endpoint(v.id, {base_url = fw.inference_url, registry = reg,
    model = "accounts/" .. fw.account_id .. "/deployments/" .. id})
  release.promote(v.id, {reason = "bench", force = true, registry = reg})
  if i == 1 then release.set_production(v.id, {reason = "bench", registry = reg}) end
end
local gw = flare.proc.spawn{argv = {flare.executable, "gateway", "rb", "--registry", reg,
  "--dir", dir .. "/gw"}}
flare.defer(function() gw:kill(15); gw:wait{timeout_s = 10}; fs.remove(dir, {recursive = true}) end)
local url
local deadline = flare.clock() + 20
while not url and flare.clock() < deadline do
  local conf = fs.read_file(dir .. "/gw/nginx.conf")
  local port = conf and conf:match("listen 127%.0%.0%.1:(%d+);")
  if port then
    local ok, r = pcall(flare.http.request, {url = "http://127.0.0.1:" .. port .. "/__flare_ready",
      timeout_s = 1})
    if ok and r.status == 204 then url = "http://127.0.0.1:" .. port end
  end
  flare.sleep(0.05)
end
assert(url, "the gateway did not start")

local n = 0
-- 16 requests at once; each says whether the command `cmd` had returned before it was sent
local function batch(cmd)
  local handles, sent = {}, {}
  local returned = cmd ~= nil and not cmd:running()
  for i = 1, 16 do
    n = n + 1
    sent[i] = flare.clock()
    handles[i] = flare.http.submit{method = "POST", url = url .. "/inference/v1/completions",
      headers = {Authorization = "Bearer " .. fw.api_key, ["Content-Type"] = "application/json",
        ["x-user-id"] = "u" .. n},
      body = '{"model": "rb", "prompt": "ab", "max_tokens": 1}', timeout_s = 30}
  end
  local out = {}
  for i, r in ipairs(flare.wait_all(handles)) do
    out[i] = {sent = sent[i], version = r.headers["x-flare-version"], status = r.status,
      after_return = returned}
  end
  return out
end
-- Sends until `version` has answered everything sent during `quiet_s` (and `cmd` returned);
-- -> the send time of the last request answered by another version, the count of failed
-- requests, of requests sent after `cmd` returned that another version answered, and when
-- `cmd` was seen to have returned (checked before and after each batch of 16).
local function until_all(version, quiet_s, cmd)
  local last_other, failed, late, returned_at = nil, 0, 0, nil
  local t_quiet = flare.clock()
  while flare.clock() - t_quiet < quiet_s or (cmd and cmd:running()) do
    if cmd and not returned_at and not cmd:running() then returned_at = flare.clock() end
    local answers = batch(cmd)
    if cmd and not returned_at and not cmd:running() then returned_at = flare.clock() end
    for _, r in ipairs(answers) do
      if r.status ~= 200 then failed = failed + 1 end
      if r.version ~= version then
        last_other = r.sent
        t_quiet = flare.clock()
        if r.after_return then late = late + 1 end
      end
    end
  end
  return last_other, failed, late, returned_at
end

local function median(xs)
  table.sort(xs)
  return xs[math.floor((#xs + 1) / 2)], xs[#xs]
end
local times, returns, failures, late = {}, {}, 0, 0
for t = 1, trials do
  -- (force: after the first trial rb@v2 is retired, rolled back)
  release.set_production("rb@v2", {reason = "bench trial " .. t, force = true, registry = reg})
  until_all("rb@v2", 0.5)
  local t0 = flare.clock()
  local cmd = flare.proc.spawn{argv = {flare.executable, "release", "--registry", reg, "rollback",
    "rb", "--reason", "bench trial " .. t}}
  local last_v2, failed, after, returned_at = until_all("rb@v1", 1.0, cmd)
  local res = cmd:wait{timeout_s = 30}
  assert(res.status == 0, "rollback failed: " .. tostring(res.stderr))
  assert(res.stdout:find("the gateway of rb serves the current route", 1, true),
    "the command did not wait for the gateway: " .. res.stdout)
  returns[t] = returned_at - t0
  times[t] = last_v2 and math.max(0, last_v2 - t0) or 0
  failures, late = failures + failed, late + after
end
local med, max = median(times)
local rmed, rmax = median(returns)
print(string.format("rollback to 100%% of traffic on the old version, %d trials: median %.0f ms, " ..
  "max %.0f ms (goal < 1000 ms); the command was seen returned after median %.0f ms, max " ..
  "%.0f ms; " ..
  "%d requests sent, %d failed, %d sent after the command returned answered by the version " ..
  "rolled back", trials, med * 1000, max * 1000, rmed * 1000, rmax * 1000, n, failures, late))
