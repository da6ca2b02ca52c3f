-- flare gateway (nginx as the data plane, the registry as the control plane) in front of two
-- deployments of the in-process emulator: canary shares within binomial tolerance over 10,000
-- users, stickiness per user id, the model rewritten per version, every request logged to
-- SQLite with its token counts, and promote / rollback acting on the live gateway across a
-- restart.
local release = require("flare.release")
local gateway = require("flare.release.gateway")
local store = require("flare.release.store")
local fs = require("flare.fs")
local json = require("flare.json")
local helpers = require("release_helpers")

local BASE = "accounts/local/models/tiny-gpt"

local function count_requests(reg, family)
  return store.open(reg):query("SELECT count(*) AS n FROM requests WHERE family = ?",
    {family})[1].n
end

describe("flare gateway", function()
  it("routes, logs and follows promote, canary and rollback", function()
    assert(fs.exists("/usr/sbin/nginx"), "nginx is not installed (bash dev.sh installs it)")
    local dir = helpers.temp_dir()
    local reg = dir .. "/registry.sqlite"
    local fw = flare.connect{backend = "emulator", provision_delay_s = 0.05, quiet = true}
    local key = fw.api_key
    for _, id in ipairs({"gw-v1", "gw-v2"}) do
      local info = fw.deployments:create_or_get{deployment_id = id, base_model = BASE,
        min_replica_count = 1, max_replica_count = 1}
      fw.deployments:wait_for_ready(info.deployment_id, {poll_interval_s = 0.05, timeout_s = 60})
    end
    for i, id in ipairs({"gw-v1", "gw-v2"}) do
      local v = release.register{family = "gw", base_model = BASE, snapshot = "s" .. i,
        weights_sha256 = fs.sha256(id), registry = reg}
      release.set_endpoint(v.id, {base_url = fw.inference_url, model =
        "accounts/" .. fw.account_id .. "/deployments/" .. id, registry = reg})
      release.promote(v.id, {reason = "test", force = true, registry = reg})
    end
    release.set_production("gw@v1", {reason = "first", registry = reg})

    local gw = gateway.start{family = "gw", registry = reg, dir = dir .. "/gw", quiet = true}
    local function send(users)
      local handles = {}
      for i, user in ipairs(users) do
        handles[i] = flare.http.submit{method = "POST", url = gw.url .. "/inference/v1/completions",
          headers = {Authorization = "Bearer " .. key, ["Content-Type"] = "application/json",
            ["x-user-id"] = user},
          body = '{"model": "gw", "prompt": "ab", "max_tokens": 1, "temperature": 0}',
          timeout_s = 60}
      end
      local out = {}
      for i, r in ipairs(flare.wait_all(handles)) do
        assert.equal(200, r.status, r.body)
        out[i] = {version = r.headers["x-flare-version"], model = json.decode(r.body).model}
      end
      return out
    end
    local function send_many(n, prefix)
      local counts, models, done = {}, {}, 0
      while done < n do
        local users = {}
        for i = 1, math.min(64, n - done) do users[i] = prefix .. (done + i) end
        for _, r in ipairs(send(users)) do
          counts[r.version] = (counts[r.version] or 0) + 1
          models[r.version] = r.model
        end
        done = done + #users
      end
      return counts, models
    end

    local counts = send_many(200, "a")
    assert.same({["gw@v1"] = 200}, counts)

    -- a 20% canary: 10,000 users split within 5 standard deviations (sd = 40)
    local route = release.canary("gw", "gw@v2", {percent = 20, reason = "try v2", registry = reg})
    assert.equal(20, route.canary_percent)
    assert.is_true(gw:poll())
    local models
    counts, models = send_many(10000, "user-")
    assert.equal(10000, (counts["gw@v1"] or 0) + (counts["gw@v2"] or 0))
    assert(math.abs(counts["gw@v2"] - 2000) <= 200, "canary got " .. tostring(counts["gw@v2"]))
    assert.not_nil(models["gw@v2"])
    -- the body's model "gw" is rewritten per version: the emulator itself knows no model "gw"
    local direct = flare.http.request{method = "POST", url = fw.inference_url ..
      "/inference/v1/completions", headers = {Authorization = "Bearer " .. key,
      ["Content-Type"] = "application/json"}, body = '{"model": "gw", "prompt": "ab"}',
        timeout_s = 30}
    assert(direct.status >= 400, "the emulator answered model gw: " .. direct.status)
    -- sticky: a user's requests all go to one version
    local users = {}
    for u = 1, 40 do for _ = 1, 5 do users[#users + 1] = "sticky-" .. u end end
    local seen = {}
    for i, r in ipairs(send(users)) do
      local u = users[i]
      assert(seen[u] == nil or seen[u] == r.version, u .. " moved between versions")
      seen[u] = r.version
    end

    -- every request is logged with its version
    local deadline = flare.clock() + 10
    while count_requests(reg, "gw") < 10400 and flare.clock() < deadline do
      flare.sleep(0.2)
      gw:poll()
    end
    assert.equal(10400, count_requests(reg, "gw"))
    -- the logged prompts are the live side of input drift
    local drift = require("flare.release.drift")
    local live = drift.live_prompts("gw", {registry = reg, limit = 500})
    assert.equal(500, #live)
    assert.equal("ab", live[1])
    assert.equal(0, drift.drift({"ba", "ab"}, live).distance)
    assert.is_true(drift.drift({"xyz"}, live).alert)
    -- a feedback score for one answer, by its request id
    local one = flare.http.request{method = "POST", url = gw.url .. "/inference/v1/completions",
      headers = {Authorization = "Bearer " .. key, ["Content-Type"] = "application/json",
        ["x-user-id"] = "a1"}, body = '{"model": "gw", "prompt": "ab", "max_tokens": 1}'}
    local request_id = one.headers["x-flare-request-id"]
    assert.matches("^%x+$", request_id)
    deadline = flare.clock() + 10
    while count_requests(reg, "gw") < 10401 and flare.clock() < deadline do
      flare.sleep(0.1)
      gw:poll()
    end
    assert.equal("gw@v1", release.feedback(request_id, 0.25, {registry = reg}))
    local fb = flare.proc.run{argv = {flare.executable, "release", "--registry", reg, "feedback",
      "ffff0000", "1"}, timeout_s = 30}
    assert.equal(1, fb.status)
    assert.matches("no request ffff0000 in the requests table", fb.stderr)
    local metrics = gateway.metrics("gw", {registry = reg, window_s = 600})
    assert.equal(0.25, metrics[1].mean_feedback)
    assert.equal(2, #metrics)
    assert.equal("gw@v1", metrics[1].version)
    assert.equal(0, metrics[1].error_rate)
    assert(metrics[1].p95_ms >= metrics[1].p50_ms)

    -- token counts of every answered request: the prompt's from the fireworks-prompt-tokens
    -- header, the completion's from the answer's usage (nginx's njs reads it as the body
    -- passes), a streamed answer's from its last event
    local db = store.open(reg)
    local asked = {}
    for _, body in ipairs({'{"model": "gw", "prompt": "abc", "max_tokens": 6, "temperature": 0}',
      '{"model": "gw", "prompt": "abcd", "max_tokens": 3, "temperature": 0, "stream": true}'}) do
      local r = flare.http.request{method = "POST", url = gw.url .. "/inference/v1/completions",
        headers = {Authorization = "Bearer " .. key, ["Content-Type"] = "application/json",
          ["x-user-id"] = "a1"}, body = body, timeout_s = 30}
      assert.equal(200, r.status, r.body)
      local usage
      for text in (r.body .. "\n"):gmatch("([^\n]*)\n") do
        local js = text:match("^data: ({.*)$") or text:match("^({.*)$")
        local event = js and json.decode(js)
        if event and type(event.usage) == "table" then usage = event.usage end
      end
      assert.not_nil(usage, r.body)
      asked[#asked + 1] = {id = r.headers["x-flare-request-id"], usage = usage}
    end
    deadline = flare.clock() + 10
    while count_requests(reg, "gw") < 10403 and flare.clock() < deadline do
      flare.sleep(0.1)
      gw:poll()
    end
    for _, a in ipairs(asked) do
      local row = db:query("SELECT prompt_tokens, completion_tokens FROM requests WHERE " ..
        "request_id = ?", {a.id})[1]
      assert.equal(a.usage.prompt_tokens, row.prompt_tokens)
      assert.equal(a.usage.completion_tokens, row.completion_tokens)
    end
    assert.equal(0, db:query("SELECT count(*) AS n FROM requests WHERE family = 'gw' AND " ..
      "status = 200 AND (prompt_tokens IS NULL OR completion_tokens IS NULL)")[1].n)
    local sums = db:query("SELECT avg(prompt_tokens) AS p, avg(completion_tokens) AS c FROM " ..
      "requests WHERE family = 'gw' AND version = 'gw@v1'")[1]
    local m1 = gateway.metrics("gw", {registry = reg, window_s = 600})[1]
    assert(math.abs(m1.tokens_per_request - (sums.p + sums.c)) < 1e-9,
      m1.tokens_per_request .. " tokens per request")
    assert(m1.completion_tokens_per_request > 0)

    -- promote v2: all traffic moves, and its canary share ends with it
    release.set_production("gw@v2", {reason = "canary passed", registry = reg})
    assert.is_nil(release.route("gw", {registry = reg}).canary)
    gw:poll()
    assert.same({["gw@v2"] = 300}, send_many(300, "b"))

    -- restart: the route lives in the registry
    gw:stop()
    gw = gateway.start{family = "gw", registry = reg, dir = dir .. "/gw", quiet = true}
    assert.same({["gw@v2"] = 100}, send_many(100, "c"))
    -- rollback restores v1 on the running gateway
    release.rollback("gw", {reason = "error rate", registry = reg})
    assert.is_true(gw:poll())
    assert.same({["gw@v1"] = 300}, send_many(300, "d"))
    -- a prompt with quotes, a backslash and a newline is logged as sent
    local odd = 'say "hi"\\\n\tend'
    local r = flare.http.request{method = "POST", url = gw.url .. "/inference/v1/completions",
      headers = {Authorization = "Bearer " .. key, ["Content-Type"] = "application/json"},
      body = json.encode{model = "gw", prompt = odd, max_tokens = 1}}
    assert.equal(200, r.status, r.body)
    gw:stop()
    deadline = flare.clock() + 5
    while count_requests(reg, "gw") < 11104 and flare.clock() < deadline do flare.sleep(0.1) end
    assert.equal(11104, count_requests(reg, "gw"))
    assert.equal(odd, require("flare.release.drift").live_prompts("gw", {registry = reg,
      limit = 1})[1])

    -- bad input
    local ok, err = pcall(release.canary, "gw", "gw@v2", {percent = 101, reason = "x",
      registry = reg})
    assert.is_false(ok)
    assert.matches("option 'percent' must be a traffic share from 0 to 100, got 101", err.message)
    local _
    _, err = pcall(release.canary, "gw", "gw@v1", {percent = 5, reason = "x", registry = reg})
    assert.matches("gw@v1 is in stage production", err.message)
    _, err = pcall(gateway.start, {family = "nope", registry = reg, dir = dir .. "/x"})
    assert.matches("unknown family 'nope'", err.message)
    store.close_all()
    fs.remove(dir, {recursive = true})
  end)
end)
