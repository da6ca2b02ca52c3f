-- Shadow traffic on flare gateway: a share of requests is mirrored to a candidate whose
-- answers are logged but never returned. The candidate's emulator fails every completion, so
-- an answer of it reaching a client would show as a failed request. Every mirrored request is
-- logged, also right after a reload (the gateway counts a route as applied once nginx's
-- workers from before the reload are gone) and across a reload with requests in flight.
local release = require("flare.release")
local gateway = require("flare.release.gateway")
local store = require("flare.release.store")
local fs = require("flare.fs")
local helpers = require("release_helpers")


describe("flare gateway shadow", function()
  it("mirrors the share to the shadow, logs its answers and returns only production's", function()
    local dir = helpers.temp_dir()
    local reg = dir .. "/registry.sqlite"
    local key = "shadow_spec_key_0123456789abcdef"
    local prod_em = flare.emulator.start{provision_delay_s = 0.05, api_key = key}
    local shadow_em = flare.emulator.start{provision_delay_s = 0.05, api_key = key,
      faults = "/inference/v1/completions:500"}
    for i, em in ipairs({prod_em, shadow_em, prod_em}) do
      local c = flare.connect{base_url = em:base_url(), api_key = key, quiet = true}
      local v = helpers.deployed_version(c, "sh", "sh-v" .. i, reg)
      release.promote(v.id, {reason = "test", force = true, registry = reg})
    end
    release.set_production("sh@v1", {reason = "first", registry = reg})
    local gw = gateway.start{family = "sh", registry = reg, dir = dir .. "/gw", quiet = true}
    local db = store.open(reg)
    -- n requests, 64 at a time (the emulator gives each open connection one of its 128
    -- workers, and the mirrored requests open their own connections to the shadow's)
    local function count(versions, responses)
      for _, r in ipairs(responses) do
        assert.equal(200, r.status, r.body)
        local v = r.headers["x-flare-version"]
        versions[v] = (versions[v] or 0) + 1
      end
      return versions
    end
    local function send(n, prefix)
      local versions = {}
      for first = 1, n, 64 do
        local users = {}
        for i = first, math.min(n, first + 63) do users[#users + 1] = prefix .. i end
        count(versions, helpers.complete_through(gw.url, key, "sh", users))
      end
      return versions
    end
    local function logged(route)
      return db:query("SELECT count(*) AS n, sum(status = 500) AS failed FROM requests " ..
        "WHERE family = 'sh' AND route = ?", {route})[1]
    end
    -- Polls until the log holds want_answered production and canary lines and want_shadow
    -- shadow lines (10 s at most).
    local function answered() return logged("production").n + logged("canary").n end
    local function settle(want_answered, want_shadow)
      local until_t = flare.clock() + 10
      repeat
        flare.sleep(0.1)
        gw:poll()
      until (answered() >= want_answered and logged("shadow").n >= want_shadow) or
        flare.clock() > until_t
    end

    -- the shadow added by a reload before any traffic: nginx's worker from before the reload
    -- (no mirror) no longer takes the connections opened right after it
    local route = release.shadow("sh", "sh@v2", {percent = 100, reason = "mirror all",
      registry = reg})
    assert.equal(100, route.shadow_percent)
    gw:poll()
    -- every answer is production's although the shadow fails every request
    assert.same({["sh@v1"] = 200}, send(200, "a"))
    settle(200, 200)
    assert.equal(200, logged("production").n)
    local shadow = logged("shadow")
    assert.equal(200, shadow.n)       -- every request mirrored
    assert.equal(200, shadow.failed)  -- each answer the injected 500, none returned
    local row = db:query("SELECT version FROM requests WHERE route = 'shadow' LIMIT 1")[1]
    assert.equal("sh@v2", row.version)

    -- a reload (a canary starts) while 64 requests are in flight: the old worker mirrors and
    -- logs those it answers, the new one the rest
    local users = {}
    for i = 1, 64 do users[i] = "r" .. i end
    local handles = {}
    for i, user in ipairs(users) do
      handles[i] = flare.http.submit{method = "POST", url = gw.url .. "/inference/v1/completions",
        headers = {Authorization = "Bearer " .. key, ["Content-Type"] = "application/json",
          ["x-user-id"] = user},
        body = '{"model": "sh", "prompt": "ab", "max_tokens": 1}', timeout_s = 30}
    end
    release.canary("sh", "sh@v3", {percent = 50, reason = "reload", registry = reg})
    assert.is_true(gw:poll())
    local versions = count({}, flare.wait_all(handles))
    count(versions, helpers.complete_through(gw.url, key, "sh", {"s1", "s2", "s3", "s4", "s5",
      "s6", "s7", "s8", "s9", "s10", "s11", "s12", "s13", "s14", "s15", "s16"}))
    assert.equal(80, (versions["sh@v1"] or 0) + (versions["sh@v3"] or 0))
    settle(280, 280)
    assert.equal(280, answered())
    assert.equal(280, logged("shadow").n)
    release.canary("sh", nil, {percent = 0, reason = "done", registry = reg})
    gw:poll()

    -- a 25% shadow: about a quarter mirrored (sd of the count 10.6 at n = 600)
    release.shadow("sh", "sh@v2", {percent = 25, reason = "a quarter", registry = reg})
    gw:poll()
    assert.same({["sh@v1"] = 600}, send(600, "b"))
    settle(880, 280 + 100)
    flare.sleep(0.5)
    gw:poll()
    local quarter = logged("shadow").n - 280
    assert(math.abs(quarter - 150) <= 60, "mirrored " .. quarter .. " of 600")

    -- ended: nothing more is mirrored
    release.shadow("sh", nil, {percent = 0, reason = "done", registry = reg})
    gw:poll()
    assert.is_nil(fs.read_file(dir .. "/gw/nginx.conf"):find("mirror", 1, true))
    local before = logged("shadow").n
    assert.same({["sh@v1"] = 100}, send(100, "c"))
    settle(980, 0)
    flare.sleep(0.5)
    gw:poll()
    assert.equal(before, logged("shadow").n)
    local history = release.get("sh@v2", {registry = reg}).history
    assert.equal("shadow_end", history[#history].action)
    gw:stop()
    prod_em:stop()
    shadow_em:stop()
    store.close_all()
    fs.remove(dir, {recursive = true})
  end)
end)
