-- Cleanup trials: each recipe is started as a real `flare run` process on its own
-- emulator state, sent SIGINT or SIGTERM at a random moment, and then checked:
--   - the process exits within 10 s of the signal, with 130 (SIGINT) or 143 (SIGTERM)
--     (or 0 when it finished before the signal);
--   - every cleanup it registered ran exactly once (FLARE_CLEANUP_LOG, see flare.cleanup);
--   - no deployment is left with replicas and no trainer job is left (through the API).
-- One trial kind is a script spinning in a loop LuaJIT compiled, with cleanups pending.
--
--   build/flare run tests/reliability/cleanup_trials.lua [--seed=N] [--trials=N] [--verbose]
--
-- Kinds take turns in a seeded order; the signal and the moment are seeded too. Prints one
-- line per trial and a summary; exits 1 if any trial broke a rule.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/../recipes/?.lua;" .. package.path
local e2e = require("e2e")
local fs = require("flare.fs")
local tasks = require("flare.tasks")

local opts = {seed = 1, trials = 20, verbose = false}
for _, a in ipairs(arg) do
  local k, v = a:match("^%-%-([%w_]+)=(.*)$")
  if k == "seed" or k == "trials" then
    opts[k] = assert(tonumber(v), "--" .. k .. " must be a number")
  elseif a == "--verbose" then
    opts.verbose = true
  else
    error("unknown argument " .. a .. " (--seed=N --trials=N --verbose)")
  end
end

local EXIT_LIMIT_S = 10

-- A loop compiled to machine code with a deployment, a trainer job and cleanups pending.
local SPIN = [[
local dir = ...
local fw = require("flare.recipe").connect{quiet = true}
fw.deployments:create_or_get{deployment_id = "spin", base_model = "accounts/local/models/tiny-gpt",
  min_replica_count = 1, max_replica_count = 1}
flare.defer(function() fw.deployments:scale_to_zero("spin") end, "scale spin to zero")
local trainer = fw:trainer{base_model = "accounts/local/models/tiny-gpt", job_id = "spin-trainer"}
flare.defer(function() trainer:close() end, "close trainer")
jit.attach(function(what)
  if what == "stop" then require("flare.fs").write_file_atomic(dir .. "/compiled", "") end
end, "trace")
local x = 0
while true do x = x + 1 end
]]

-- name, script (a recipe of scripts/), args, signal window {from, to} in seconds after the
-- start (the compiled loop: after LuaJIT compiled it), setup(env) run before the trial
-- process. The windows end before a run on an idle machine would (deploy: 0.65 s, eval:
-- 1.3 s, hotload: 2 s, distill: 4.4 s, grpo: 8 s), so most signals land mid-run.
local kinds = {
  {name = "grpo", script = "grpo.lua", args = {"--steps=100"}, window = {0.3, 7.5}},
  {name = "distill", script = "distill.lua", window = {0.2, 4}},
  {name = "hotload", script = "hotload.lua", window = {0.1, 1.8}},
  {name = "deploy", script = "deploy.lua", args = {"--action=create", "--id=trial-dep"},
    window = {0.05, 0.6}, may_keep = "trial-dep"},
  {name = "eval", script = "eval.lua", args = {"--deployment-id=trial-eval", "--problems=64"},
    window = {0.1, 1.2},
    setup = function(env)
      for _, a in ipairs{{"--action=create", "--id=trial-eval"}, {"--action=scale-to-zero",
        "--id=trial-eval"}} do
        local r = e2e.run(env, "deploy.lua", a, 120)
        if r.status ~= 0 then error("eval setup failed: " .. r.stderr) end
      end
    end},
  {name = "compiled-loop", window = {0.1, 1.5}, spin = true},
}

local rng = tasks.rng(opts.seed)
local function uniform(a, b) return a + (b - a) * (rng:next() % 1000000) / 1000000 end

-- Seeded order in which the kinds take turns.
local order = {}
for i = 1, #kinds do order[i] = i end
for i = #order, 2, -1 do
  local j = rng:next() % i + 1
  order[i], order[j] = order[j], order[i]
end

-- {defer = {[id] = name}, cancel = {[id] = true}, run = {[id] = count}, done = {[id] = outcome}}
local function read_cleanup_log(path)
  local log = {defer = {}, cancel = {}, run = {}, done = {}}
  for line in (fs.read_file(path) or ""):gmatch("[^\n]+") do
    local event, id, rest = line:match("^(%a+) (%d+) (.*)$")
    if event == "defer" then log.defer[id] = rest
    elseif event == "cancel" then log.cancel[id] = true
    elseif event == "run" then log.run[id] = (log.run[id] or 0) + 1
    elseif event == "done" then log.done[id] = rest end
  end
  return log
end

local function wait_for_file(path, timeout_s)
  local deadline = flare.clock() + timeout_s
  while flare.clock() < deadline do
    if fs.exists(path) then return true end
    flare.sleep(0.05)
  end
  return false
end

local function trial(kind)
  local env = e2e.scratch()
  local ok, result = pcall(function()
    local problems = {}
    if kind.setup then kind.setup(env) end
    env.extra_env = {FLARE_CLEANUP_LOG = env.dir .. "/cleanup.log"}
    local c
    if kind.spin then
      local path = env.dir .. "/spin.lua"
      fs.write_file_atomic(path, SPIN)
      c = e2e.spawn(env, path, {env.dir})
      if not wait_for_file(env.dir .. "/compiled", 120) then
        problems[#problems + 1] = "never compiled"
      end
    else
      c = e2e.spawn(env, kind.script, kind.args)
    end
    local signal = rng:next() % 2 == 0 and "INT" or "TERM"
    local delay = uniform(kind.window[1], kind.window[2])
    local deadline = flare.clock() + delay
    while flare.clock() < deadline and c:running() do flare.sleep(0.02) end
    local finished = not c:running()
    local sent = flare.clock()
    if not finished then c:kill(signal) end
    local r = c:wait{timeout_s = 60}
    local exit_s = flare.clock() - sent
    local want = finished and 0 or (signal == "INT" and 130 or 143)
    if r.status ~= want then
      problems[#problems + 1] = string.format("exit status %s, expected %d",
        tostring(r.status), want)
    end
    if not finished and exit_s > EXIT_LIMIT_S then
      problems[#problems + 1] = string.format("exited %.1f s after the signal", exit_s)
    end
    local log = read_cleanup_log(env.dir .. "/cleanup.log")
    local registered, ran = 0, 0
    for id, name in pairs(log.defer) do
      if not log.cancel[id] then
        registered = registered + 1
        local runs = log.run[id] or 0
        if runs == 1 then ran = ran + 1 end
        if runs ~= 1 then
          problems[#problems + 1] = string.format("cleanup '%s' ran %d times", name, runs)
        end
      end
    end
    local st = e2e.api_state(env)
    for id, d in pairs(st.deployments) do
      local kept_by_design = finished and id == kind.may_keep
      if (d.max > 0 or d.min > 0) and not kept_by_design then
        problems[#problems + 1] = string.format("deployment %s left with %d..%d replicas",
          id, d.min, d.max)
      end
    end
    for id, state in pairs(st.trainer_jobs) do
      problems[#problems + 1] = string.format("trainer job %s left (%s)", id, tostring(state))
    end
    return {signal = finished and "-" or signal, delay = delay, finished = finished,
      exit_s = exit_s, status = r.status, registered = registered, ran = ran,
      problems = problems, stderr = r.stderr}
  end)
  e2e.remove(env)
  if not ok then
    return {signal = "?", delay = 0, exit_s = 0, status = -1, registered = 0, ran = 0,
      problems = {"trial failed: " ..
        tostring(type(result) == "table" and result.message or result)}}
  end
  return result
end

print(string.format("cleanup trials: seed %d, %d trials", opts.seed, opts.trials))
local failed, signaled, finished, cleanups, exit_times = 0, 0, 0, 0, {}
for n = 1, opts.trials do
  local kind = kinds[order[(n - 1) % #order + 1]]
  local t = trial(kind)
  if t.finished then finished = finished + 1 else
    signaled = signaled + 1
    exit_times[#exit_times + 1] = t.exit_s
  end
  cleanups = cleanups + t.ran
  local verdict = #t.problems == 0 and "ok" or ("FAIL: " .. table.concat(t.problems, "; "))
  if #t.problems > 0 then failed = failed + 1 end
  local outcome = t.finished and "(finished first)  " or
    string.format("exited in %5.2f s", t.exit_s)
  print(string.format("%3d %-13s SIG%-4s at %5.2f s  %s  exit %3s  cleanups %d/%d  %s", n,
    kind.name, t.signal, t.delay, outcome,
    tostring(t.status), t.ran, t.registered, verdict))
  if (opts.verbose or #t.problems > 0) and t.stderr then io.write(t.stderr) end
end
table.sort(exit_times)
local function pct(p) return exit_times[math.max(1, math.ceil(#exit_times * p))] or 0 end
print(string.format("%d trials: %d signaled, %d finished before the signal; " ..
  "%d cleanups ran once; " ..
  "exit after the signal: median %.2f s, max %.2f s; %d failed",
  opts.trials, signaled, finished, cleanups, pct(0.5), exit_times[#exit_times] or 0, failed))
if failed > 0 then os.exit(1) end
