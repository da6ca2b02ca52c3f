-- `flare release rollout`: the canary share walks through its steps under traffic through a
-- `flare gateway` process, and the version becomes production; a version whose emulator
-- fails half of its completions (fault injection) fires the error-rate alert at its first
-- step, is rolled back with the alert as the reason, and the command exits 1.
local release = require("flare.release")
local rollout = require("flare.release.rollout")
local store = require("flare.release.store")
local fs = require("flare.fs")
local helpers = require("release_helpers")


describe("flare release rollout", function()
  it("checks its steps and durations", function()
    assert.same({5, 25, 50, 100}, rollout.parse_steps("5,25,50,100"))
    assert.same({100}, rollout.parse_steps("100"))
    for _, bad in ipairs({"0,100", "5,120", "50,25,100", "5,50", "x,100", ""}) do
      local ok, err = pcall(rollout.parse_steps, bad)
      assert.is_false(ok, bad)
      assert.matches("option 'steps'", err.message)
    end
    assert.equal(30, rollout.parse_duration("30s"))
    assert.equal(0.5, rollout.parse_duration("500ms"))
    assert.equal(120, rollout.parse_duration("2m"))
    assert.equal(4, rollout.parse_duration("4"))
    local ok, err = pcall(rollout.parse_duration, "soon")
    assert.is_false(ok)
    assert.matches("got 'soon'", err.message)
  end)

  it("walks a canary to production, and rolls a faulty one back on its alert", function()
    local dir = helpers.temp_dir()
    local reg = dir .. "/registry.sqlite"
    local key = "rollout_spec_key_0123456789abcdef"
    local good = flare.emulator.start{provision_delay_s = 0.05, api_key = key}
    local faulty = flare.emulator.start{provision_delay_s = 0.05, api_key = key,
      faults = "/inference/v1/completions:500:rate=0.5:seed=5"}
    for i, em in ipairs({good, good, faulty}) do
      local c = flare.connect{base_url = em:base_url(), api_key = key, quiet = true}
      local v = helpers.deployed_version(c, "ro", "ro-v" .. i, reg)
      if i < 3 then release.promote(v.id, {reason = "test", force = true, registry = reg}) end
    end
    release.set_production("ro@v1", {reason = "first", registry = reg})

    -- bad input: a dev version, a version of another family, an unknown family
    local ok, err = pcall(rollout.run, "ro", "ro@v3", {reason = "x", registry = reg})
    assert.is_false(ok)
    assert.matches("ro@v3 is in stage dev; a rollout takes a staging version", err.message)
    ok, err = pcall(rollout.run, "rx", "ro@v2", {reason = "x", registry = reg})
    assert.is_false(ok)
    assert.matches("ro@v2 is a version of family ro, not rx", err.message)
    local bad = flare.proc.run{argv = {flare.executable, "release", "--registry", reg, "rollout",
      "ro", "ro@v2", "--steps", "5,150"}}
    assert.equal(1, bad.status)
    assert.matches("each step is a traffic share above 0 and at most 100, got '150'", bad.stderr)

    local gw_proc = flare.proc.spawn{argv = {flare.executable, "gateway", "ro", "--registry", reg,
      "--dir", dir .. "/gw"}}
    local url
    local deadline = flare.clock() + 30
    while not url and flare.clock() < deadline do
      local g = store.open(reg):query("SELECT port, pid FROM gateways WHERE family = 'ro'")[1]
      if g then url = "http://127.0.0.1:" .. g.port end
      flare.sleep(0.05)
    end
    assert(url, "the gateway did not start")

    -- runs `flare release rollout ARGS` while 16 requests at a time go through the gateway
    local n = 0
    local function rollout_under_load(extra)
      local argv = {flare.executable, "release", "--registry", reg, "rollout", "ro"}
      for _, a in ipairs(extra) do argv[#argv + 1] = a end
      local child = flare.proc.spawn{argv = argv}
      local tally = {}
      while child:running() do
        local users = {}
        for i = 1, 16 do users[i] = "u" .. (n + i) end
        n = n + 16
        helpers.tally(tally, helpers.complete_through(url, key, "ro", users))
        flare.sleep(0.02)
      end
      return child:wait{timeout_s = 10}, tally
    end

    local r, tally = rollout_under_load({"ro@v2", "--steps", "10,50,100", "--hold", "1s",
      "--alert-min-requests", "10"})
    assert.equal(0, r.status, r.stdout .. r.stderr)
    assert.matches("ro@v2 at 10%%", r.stdout)
    assert.matches("ro@v2 at 100%% %(production%)", r.stdout)
    assert.matches("ro@v2 is production after", r.stdout)
    assert.equal("ro@v2", release.production("ro", {registry = reg}).id)
    assert(tally["ro@v2"] and tally["ro@v2"].ok > 0, "ro@v2 answered nothing")
    assert.equal(0, (tally["ro@v1"] or {failed = 0}).failed)
    assert.equal(0, tally["ro@v2"].failed)
    local actions = {}
    for _, h in ipairs(release.get("ro@v2", {registry = reg}).history) do
      actions[#actions + 1] = h.action .. (h.reason:match("^canary (%d+)%%") or "")
    end
    assert.same({"register", "promote", "canary10", "canary50", "promote"}, actions)

    release.promote("ro@v3", {reason = "test", force = true, registry = reg})
    r, tally = rollout_under_load({"ro@v3", "--steps", "20,100", "--hold", "20s",
      "--alert-error-rate", "5", "--alert-min-requests", "10"})
    assert.equal(1, r.status, r.stdout .. r.stderr)
    assert.matches("rollout of ro@v3 stopped after [%d.]+s: error rate", r.stdout)
    assert.matches("production is ro@v2", r.stdout)
    assert.equal("ro@v2", release.production("ro", {registry = reg}).id)
    assert.is_nil(release.route("ro", {registry = reg}).canary)
    assert(tally["ro@v3"] and tally["ro@v3"].failed > 0, "the canary saw no failure")
    assert.equal(0, tally["ro@v2"].failed)  -- failures stayed within the canary's share
    local h = release.get("ro@v3", {registry = reg}).history
    assert.equal("canary_end", h[#h].action)
    assert.matches("automatic rollback: alert on rollout of ro@v3: error rate %d+%.%d%% > 5%%",
      h[#h].reason)
    assert.equal("flare release rollout", h[#h].by)
    assert.equal("staging", release.get("ro@v3", {registry = reg}).stage)

    -- straight to 100: production is watched through the hold and rolled back
    r, tally = rollout_under_load({"ro@v3", "--steps", "100", "--hold", "20s",
      "--alert-error-rate", "5", "--alert-min-requests", "10"})
    assert.equal(1, r.status, r.stdout .. r.stderr)
    assert.matches("ro@v3 at 100%% %(production%)", r.stdout)
    assert.matches("production is ro@v2", r.stdout)
    assert.equal("ro@v2", release.production("ro", {registry = reg}).id)
    local v3 = release.get("ro@v3", {registry = reg})
    assert.equal("retired", v3.stage)
    assert.equal("rollback", v3.history[#v3.history].action)
    assert.matches("rolled back to ro@v2: automatic rollback: alert on rollout of ro@v3: " ..
      "error rate", v3.history[#v3.history].reason)
    assert(tally["ro@v3"].failed > 0, "the rollout saw no failure")

    -- `flare release rollback` returns once the gateway serves the restored version alone: the
    -- requests sent right after it (on the keep-alive connections of the traffic before it)
    -- are all answered by that version
    helpers.complete_through(url, key, "ro", {"k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8"})
    local rb = flare.proc.run{argv = {flare.executable, "release", "--registry", reg, "rollback",
      "ro", "--reason", "back to v1"}, timeout_s = 30}
    assert.equal(0, rb.status, rb.stderr)
    assert.matches("ro@v1 is now production", rb.stdout)
    assert.matches("the gateway of ro serves the current route", rb.stdout)
    local after = {}
    for i = 1, 64 do after[i] = "after" .. i end
    assert.same({["ro@v1"] = {ok = 64, failed = 0}},
      helpers.tally({}, helpers.complete_through(url, key, "ro", after)))

    gw_proc:kill(15)
    gw_proc:wait{timeout_s = 10}
    good:stop()
    faulty:stop()
    store.close_all()
    fs.remove(dir, {recursive = true})
  end)
end)
