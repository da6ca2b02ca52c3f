-- Alert checks: thresholds against given metrics, and on the gateway a canary on a faulty
-- deployment (the emulator's fault injection) ended by its error-rate alert, then a rollout
-- of the same version rolled back, with no request failing outside the faulty version.
local alerts = require("flare.release.alerts")
local release = require("flare.release")
local gateway = require("flare.release.gateway")
local store = require("flare.release.store")
local fs = require("flare.fs")
local helpers = require("release_helpers")


describe("flare.release.alerts", function()
  it("fires each threshold with its numbers, and nothing below min_requests", function()
    local spec = alerts.spec{max_error_rate_pct = 5, max_p95_ms = 200, min_feedback = 0.5}
    local m = {n = 40, error_rate = 0.1, p95_ms = 250, mean_feedback = 0.25}
    assert.same({"error rate 10.0% > 5% (n=40)", "p95 latency 250 ms > 200 ms (n=40)",
      "mean feedback 0.250 < 0.5"}, alerts.fired(m, spec))
    assert.same({}, alerts.fired({n = 40, error_rate = 0.05, p95_ms = 200, mean_feedback = 0.5},
      spec))
    assert.same({}, alerts.fired({n = 19, error_rate = 1, p95_ms = 1e6}, spec))
    assert.is_nil(alerts.spec{window_s = 10})
    local ok, err = pcall(alerts.spec, {max_error_rate_pct = 120})
    assert.is_false(ok)
    assert.matches("option 'max_error_rate_pct' must be from 0 to 100, got 120", err.message)
    local _
    _, err = pcall(alerts.spec, {max_p95_ms = 0, max_error_rate_pct = 1})
    assert.matches("option 'max_p95_ms' must be above 0", err.message)
  end)

  it("ends a faulty canary and rolls back a faulty rollout on the gateway", function()
    local dir = helpers.temp_dir()
    local reg = dir .. "/registry.sqlite"
    -- two emulators with one key (the gateway passes the client's Authorization on): the
    -- second answers half of its completions with a 500
    local key = "alerts_spec_key_0123456789abcdef"
    local ems = {flare.emulator.start{provision_delay_s = 0.05, api_key = key},
      flare.emulator.start{provision_delay_s = 0.05, api_key = key,
        faults = "/inference/v1/completions:500:rate=0.5:seed=3"}}
    for i, em in ipairs(ems) do
      local c = flare.connect{base_url = em:base_url(), api_key = key, quiet = true}
      local v = helpers.deployed_version(c, "al", "al-v" .. i, reg)
      release.promote(v.id, {reason = "test", force = true, registry = reg})
    end
    release.set_production("al@v1", {reason = "first", registry = reg})
    local gw = gateway.start{family = "al", registry = reg, dir = dir .. "/gw", quiet = true,
      alerts = {max_error_rate_pct = 5, window_s = 60, min_requests = 20}}
    local n = 0
    -- 64 requests, then a poll of the registry and the log; adds to tally[version].
    local function round(tally)
      local users = {}
      for i = 1, 64 do users[i] = "u" .. (n + i) end
      n = n + 64
      helpers.tally(tally, helpers.complete_through(gw.url, key, "al", users))
      flare.sleep(0.25)  -- nginx flushes its access log every 200 ms
      gw:poll()
    end

    -- a 25% canary of the faulty version: its error-rate alert ends it
    release.canary("al", "al@v2", {percent = 25, reason = "try v2", registry = reg})
    gw:poll()
    local tally = {}
    for _ = 1, 20 do
      round(tally)
      if not release.route("al", {registry = reg}).canary then break end
    end
    assert.is_nil(release.route("al", {registry = reg}).canary, "the canary was not ended")
    assert(tally["al@v2"] and tally["al@v2"].failed > 0, "the canary saw no failure")
    assert.equal(0, tally["al@v1"].failed)  -- failures stayed within the canary's share
    local history = release.get("al@v2", {registry = reg}).history
    local last = history[#history]
    assert.equal("canary_end", last.action)
    assert.matches("automatic rollback: alert on canary al@v2: " ..
      "error rate %d+%.%d%% > 5%% %(n=%d+%)", last.reason)
    assert.equal("flare gateway", last.by)
    tally = {}
    round(tally)
    assert.same({["al@v1"] = {ok = 64, failed = 0}}, tally)

    -- a rollout of the faulty version is rolled back by the same alert
    release.set_production("al@v2", {reason = "rollout", force = true, registry = reg})
    gw:poll()
    for _ = 1, 20 do
      round({})
      if release.production("al", {registry = reg}).id == "al@v1" then break end
    end
    assert.equal("al@v1", release.production("al", {registry = reg}).id)
    local v2 = release.get("al@v2", {registry = reg})
    assert.equal("retired", v2.stage)
    assert.matches("alert on rollout of al@v2: error rate", v2.history[#v2.history].reason)
    tally = {}
    round(tally)
    assert.same({["al@v1"] = {ok = 64, failed = 0}}, tally)
    assert.equal(2, #gw.fired)
    gw:stop()
    for _, em in ipairs(ems) do em:stop() end
    store.close_all()
    fs.remove(dir, {recursive = true})
  end)
end)
