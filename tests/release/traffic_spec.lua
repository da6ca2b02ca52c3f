-- `flare traffic replay`: prompts from JSONL, open loop through a gateway, each answer scored
-- by a flare.tasks verifier and the score posted to the gateway, which records it as the
-- request's feedback in the registry.
local release = require("flare.release")
local traffic = require("flare.release.traffic")
local gateway = require("flare.release.gateway")
local store = require("flare.release.store")
local json = require("flare.json")
local fs = require("flare.fs")
local helpers = require("release_helpers")


describe("flare traffic replay", function()
  it("refuses bad prompts files and options, naming the line or the option", function()
    local dir = helpers.temp_dir()
    fs.write_file_atomic(dir .. "/bad.jsonl", '{"prompt": "1+1="}\n{"prompt": 3}\n')
    local ok, err = pcall(traffic.read_prompts, dir .. "/bad.jsonl")
    assert.is_false(ok)
    assert.matches("bad.jsonl line 2: a prompt is a string or an object", err.message)
    fs.write_file_atomic(dir .. "/torn.jsonl", '"ab"\n{"prompt": \n')
    ok, err = pcall(traffic.read_prompts, dir .. "/torn.jsonl")
    assert.is_false(ok)
    assert.matches("torn.jsonl line 2: not JSON", err.message)
    for _, case in ipairs({
      {{rate = 0, duration_s = 1}, "option 'rate' must be above 0"},
      {{rate = 1, duration_s = -1}, "option 'duration_s' must be above 0"},
      {{rate = 1, duration_s = 1, verifier = "additon"}, "unknown task 'additon'"},
      {{rate = 1, duration_s = 1, url = "localhost:80"}, "option 'url' must be http"}}) do
      local o = case[1]
      o.prompts = {{prompt = "ab"}}
      o.url = o.url or "http://127.0.0.1:1"
      ok, err = pcall(traffic.replay, o)
      assert.is_false(ok)
      assert.matches(case[2], err.message, 1, true)
    end
    local r = flare.proc.run{argv = {flare.executable, "traffic", "replay", dir .. "/x.jsonl",
      "--rate", "5"}}
    assert.equal(2, r.status)
    assert.matches("--duration D is required", r.stderr)
    fs.remove(dir, {recursive = true})
  end)

  it("replays at the rate, scores the answers and records the scores as feedback", function()
    local dir = helpers.temp_dir()
    local reg = dir .. "/registry.sqlite"
    local key = "traffic_spec_key_0123456789abcdef"
    local em = flare.emulator.start{provision_delay_s = 0.05, api_key = key}
    local c = flare.connect{base_url = em:base_url(), api_key = key, quiet = true}
    local v = helpers.deployed_version(c, "tr", "tr-v1", reg)
    release.set_production(v.id, {reason = "first", force = true, registry = reg})
    local gw = gateway.start{family = "tr", registry = reg, dir = dir .. "/gw", quiet = true}

    -- the feedback route takes a request id of 32 hex digits and a number
    local bad = flare.http.request{method = "POST", url = gw.url ..
      "/__flare_feedback?id=nothex&score=1"}
    assert.equal(400, bad.status)
    bad = flare.http.request{method = "POST", url = gw.url ..
      "/__flare_feedback?id=" .. string.rep("a", 32) .. "&score=high"}
    assert.equal(400, bad.status)

    local lines = {}
    for i, p in ipairs(flare.tasks.get("addition", {seed = 4}):sample(12)) do
      lines[i] = json.encode({prompt = p.prompt, answer = p.answer, task = "addition",
        user = i % 3 == 0 and ("named-" .. i) or nil})
    end
    fs.write_file_atomic(dir .. "/prompts.jsonl", table.concat(lines, "\n") .. "\n")
    local child = flare.proc.spawn{argv = {flare.executable, "traffic", "replay",
      dir .. "/prompts.jsonl", "--rate", "40", "--duration", "1500ms", "--family", "tr",
      "--registry", reg, "--max-tokens", "4", "--json"},
      env = {FIREWORKS_API_KEY = key}}
    while child:running() do
      flare.sleep(0.2)
      gw:poll()
    end
    local r = child:wait{timeout_s = 10}
    assert.equal(0, r.status, r.stderr)
    local out = json.decode(r.stdout)
    assert.equal(60, out.sent)
    assert.equal(60, out.answered)
    assert.same({["200"] = 60}, out.statuses)
    assert.equal(60, out.by_version["tr@v1"].n)
    assert.equal(60, out.scored)
    assert.equal(60, out.feedback_posted)
    assert(out.p50_ms > 0 and out.p99_ms >= out.p50_ms)
    assert(out.achieved_rate > 0)

    flare.sleep(0.3)  -- nginx flushes its access log every 200 ms
    gw:poll()
    local db = store.open(reg)
    local rows = db:query("SELECT user, feedback FROM requests WHERE family = 'tr' AND " ..
      "route = 'production'")
    assert.equal(60, #rows)
    local sum, users = 0, {}
    for _, row in ipairs(rows) do
      assert(row.feedback, "a request without its feedback")
      sum = sum + row.feedback
      users[row.user] = true
    end
    assert.near(out.mean_score, sum / 60, 1e-5)
    assert(users["named-3"] and users["user-1"], "the users were not sent")
    local m = gateway.metrics("tr", {registry = reg, window_s = 600})[1]
    assert.near(out.mean_score, m.mean_feedback, 1e-5)

    -- the summary names the rate, statuses and percentiles
    local text = traffic.summary(out, 40)
    assert.matches("sent 60 requests in [%d.]+s: [%d.]+ req/s %(target 40%)", text)
    assert.matches("statuses 200: 60", text)
    assert.matches("verifier: 60 scored, mean [%d.]+; feedback posted 60", text)
    gw:stop()
    em:stop()
    store.close_all()
    fs.remove(dir, {recursive = true})
  end)
end)
