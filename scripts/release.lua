-- Shipping a model, fully offline on two local emulators: production and two candidates
-- trained from the same base (one over-trained on sort, so it regresses on vowels), both
-- gated on a frozen suite (the worse one blocked by its slice gate), the good one shadowed,
-- then rolled out through canary steps under replayed traffic; a third candidate served by
-- an emulator that fails half of its completions is rolled back by the error-rate alert;
-- `flare release rollback` restores the previous version. `flare report RUN_DIR` then shows
-- each version's latency and error-rate curves. docs/release.md describes every part.
--
--   flare run scripts/release.lua
--   flare run scripts/release.lua --hold_s=2 --rate=30 --good_steps=60
local run = flare.recipe{name = "release", config = {
  family = "sortvowels", base_model = "accounts/local/models/tiny-gpt", seed = 0,
  learning_rate = 1e-2, prod_steps = 20, good_steps = 120, overtrain_steps = 150,
  suite_n = 40, slice_threshold = 0.05, rate = 40, shadow_s = 3, steps = "10,50,100",
  hold_s = 3, fault_rate = 0.5, max_error_rate_pct = 5, min_requests = 10,
}}
local c = run.config
if run:plan{
  string.format("production: %d mixed sort+vowels steps; good: %d; worse: %d + %d on sort only",
    c.prod_steps, c.good_steps, c.good_steps, c.overtrain_steps),
  "gate both against production on the suite's sort and vowels slices",
  string.format("shadow %gs, rollout %s holding %gs at %g req/s; a faulty third candidate; " ..
    "rollback", c.shadow_s, c.steps, c.hold_s, c.rate),
} then return end

local release, traffic, gateway = flare.release, require("flare.release.traffic"),
  require("flare.release.gateway")
local reg = run.dir .. "/registry.sqlite"
local em = flare.emulator.start{provision_delay_s = 0.05}
local faulty = flare.emulator.start{provision_delay_s = 0.05, api_key = em:api_key(),
  faults = "/inference/v1/completions:500:rate=" .. c.fault_rate .. ":seed=1"}
run:on_exit(function() em:stop() faulty:stop() end, "stop the emulators")
local function connect(e) return flare.connect{base_url = e:base_url(), api_key = em:api_key(),
  quiet = true} end
local fw = connect(em)

local sort4 = {sort = {max_len = 4}}
local suite = release.suite{name = "sort+vowels", tasks = {
  {task = "sort", seed = 71, n = c.suite_n, options = sort4.sort},
  {task = "vowels", seed = 72, n = c.suite_n}}, sampling = {temperature = 0, max_tokens = 8},
  slices = {{name = "sort", task = "sort"}, {name = "vowels", task = "vowels"}}}
local function phase(steps, tasks) return {tasks = tasks or {"sort", "vowels"}, steps = steps,
  options = sort4} end
local function candidate(id, plan, o)
  o = o or {}
  return require("flare.release.candidate").build{conn = o.conn or fw, family = c.family,
    deployment_id = id, base_model = c.base_model, plan = plan, run = run, registry = reg,
    suite = not o.no_suite and suite or nil, learning_rate = c.learning_rate,
    seed = c.seed + (o.seed or 0)}
end

-- 1. the version in production today, and two candidates from the same base
local prod = candidate("rel-prod", {phase(c.prod_steps)})
release.promote(prod.version.id, {reason = "first version", force = true, registry = reg})
release.set_production(prod.version.id, {reason = "first version", registry = reg})
local good = candidate("rel-good", {phase(c.good_steps)})
local worse = candidate("rel-worse", {phase(c.good_steps), phase(c.overtrain_steps, {"sort"})})

-- 2. promotion gates against production: reward per slice, paired bootstrap
local function gate(cand, name)
  local report = release.gate{suite = suite, baseline = prod.results, candidate = cand.results,
    gates = {metric = "reward", slice_threshold = c.slice_threshold},
    out_dir = run.dir .. "/gate-" .. name, registry = reg}
  print(require("flare.release.gate").summary(report))
  return report, run.dir .. "/gate-" .. name .. "/gate.json"
end
local good_gate, good_json = gate(good, "good")
local worse_gate, worse_json = gate(worse, "worse")
if not good_gate.passed or worse_gate.passed then
  flare.error{code = "gate", message = "expected the good candidate to pass and the worse " ..
    "one to fail (good: " .. tostring(good_gate.passed) .. ", worse: " ..
    tostring(worse_gate.passed) .. ")"}
end
release.promote(good.version.id, {reason = "gate passed", gate = good_json, registry = reg})
local ok, err = pcall(release.promote, worse.version.id, {reason = "try", gate = worse_json,
  registry = reg})
print(ok and "unexpected: the worse candidate was promoted" or ("blocked: " .. err.message))

-- 3. the gateway (its own process, following the registry) and replayed traffic, whose
-- per-version latency and error rate go to the run's metrics every second
local gw = gateway.spawn{family = c.family, registry = reg, dir = run.dir .. "/gateway"}
run:on_exit(gw.stop, "stop the gateway")
local prompts = traffic.write_prompts(run.dir .. "/prompts.jsonl", {tasks = {"sort", "vowels"},
  n = 100, seed = 900, options = sort4})
local tick = 0
local function replay(name, o)
  local r = traffic.replay{prompts = prompts, url = gw.url, rate = c.rate, max_tokens = 8,
    duration_s = o.duration_s or 3600, stop = o.stop, api_key = em:api_key(),
    on_interval = function(t)
      tick = tick + 1
      local m = {step = tick, phase = name}
      for v, s in pairs(t.versions) do
        m["p50_ms/" .. v], m["p95_ms/" .. v], m["error_rate/" .. v] = s.p50_ms, s.p95_ms,
          s.error_rate
      end
      run:log(m)
    end}
  print(name .. ": " .. traffic.summary(r, c.rate))
  return r
end
local function rollout(id)  -- `flare release rollout` while the traffic plays
  local child = flare.proc.spawn{argv = {flare.executable, "release", "--registry", reg,
    "rollout", c.family, id, "--steps", c.steps, "--hold", c.hold_s .. "s", "--alert-error-rate",
    tostring(c.max_error_rate_pct), "--alert-min-requests", tostring(c.min_requests)}}
  local r = replay("rollout " .. id, {stop = function() return not child:running() end})
  local res = child:wait{timeout_s = 60}
  io.stdout:write(res.stdout, res.stderr)
  return res.status, r
end

release.shadow(c.family, good.version.id, {percent = 100, reason = "shadow", registry = reg})
gateway.wait_applied(c.family, {registry = reg})  -- every request from now on is mirrored
local shadow_from = flare.time()
local shadowed = replay("shadow " .. good.version.id, {duration_s = c.shadow_s})
local sm, until_t = {n = 0, p50_ms = 0, error_rate = 0}, flare.clock() + 5
while sm.n < shadowed.answered and flare.clock() < until_t do flare.sleep(0.2)  -- log: 0.2 s
  sm = gateway.metrics(c.family, {registry = reg, since = shadow_from,
    version = good.version.id})[1] or sm
end
print(string.format("shadow %s: %d mirrored answers of %d requests (logged, not returned), " ..
  "p50 %.1f ms, errors %.1f%%", good.version.id, sm.n, shadowed.answered, sm.p50_ms,
  100 * sm.error_rate))
release.shadow(c.family, nil, {percent = 0, reason = "shadow done", registry = reg})
assert(rollout(good.version.id) == 0, "the rollout of the good candidate failed")

-- 4. a third candidate whose deployment fails half of its completions: the alert rolls it back
local third = candidate("rel-third", {phase(c.good_steps)}, {conn = connect(faulty),
  no_suite = true, seed = 1})
release.promote(third.version.id, {reason = "fault drill (its deployment fails on purpose)",
  force = true, registry = reg})
local status, r = rollout(third.version.id)
local on_prod = r.by_version[good.version.id] or {n = 0, errors = 0}
print(string.format("fault drill: rollout exit %d; production %s answered %d, %d failed",
  status, good.version.id, on_prod.n, on_prod.errors))
if status ~= 1 or on_prod.errors > 0 then
  flare.error{code = "alert", message = "the faulty canary was not contained"}
end

-- 5. one-command rollback to the version before; it returns once the gateway serves it
local t0 = flare.clock()
local rb = flare.proc.run{argv = {flare.executable, "release", "--registry", reg, "rollback",
  c.family, "--reason", "end of the demo"}}
local rollback_s = flare.clock() - t0
io.stdout:write(rb.stdout, rb.stderr)
local after = replay("after rollback", {duration_s = 2})
local restored = release.production(c.family, {registry = reg}).id
print(string.format("after the rollback: %d of %d answers by %s", (after.by_version[restored]
  or {n = 0}).n, after.answered, restored))
run:log{rollback_s = rollback_s, production = restored}
print("curves: flare report " .. run.dir)
