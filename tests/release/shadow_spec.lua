-- Shadow traffic on flare gateway: a share of requests is mirrored to a candidate whose
-- answers are logged but never returned. The candidate's emulator (`flare serve` in its own
-- process) fails every completion, so an answer of it reaching a client would show as a
-- failed request.
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
    -- production: an emulator in this process; the shadow: `flare serve`, failing every
    -- completion. (Mirrored requests to a second emulator inside this process reached it
    -- seconds late or not at all while the test polled; not explained yet.)
    local prod_em = flare.emulator.start{provision_delay_s = 0.05, api_key = key}
    local serve = flare.proc.spawn{argv = {"sh", "-c", "exec \"$0\" serve --port 0 " ..
      "--state-dir \"$1\" --provision-delay 0 --faults /inference/v1/completions:500 " ..
      ">\"$1.out\" 2>&1", flare.executable, dir .. "/serve"},
      env = {FLARE_EMULATOR_API_KEY = key}}
    local shadow_url
    local deadline = flare.clock() + 20
    while not shadow_url and flare.clock() < deadline do
      shadow_url = (fs.read_file(dir .. "/serve.out") or ""):match("listening on (http://%S+)")
      flare.sleep(0.05)
    end
    assert(shadow_url, "flare serve did not start: " .. tostring(fs.read_file(dir .. "/serve.out")))
    for i, url in ipairs({prod_em:base_url(), shadow_url}) do
      local c = flare.connect{base_url = url, api_key = key, quiet = true}
      local v = helpers.deployed_version(c, "sh", "sh-v" .. i, reg)
      release.promote(v.id, {reason = "test", force = true, registry = reg})
    end
    release.set_production("sh@v1", {reason = "first", registry = reg})
    local gw = gateway.start{family = "sh", registry = reg, dir = dir .. "/gw", quiet = true}
    local db = store.open(reg)
    -- n requests, 64 at a time: the emulator gives each open connection one of its 128
    -- workers, and the mirrored requests open their own connections to the shadow's
    local function send(n, prefix)
      local versions = {}
      for first = 1, n, 64 do
        local users = {}
        for i = first, math.min(n, first + 63) do users[#users + 1] = prefix .. i end
        for _, r in ipairs(helpers.complete_through(gw.url, key, "sh", users)) do
          assert.equal(200, r.status, r.body)
          local v = r.headers["x-flare-version"]
          versions[v] = (versions[v] or 0) + 1
        end
      end
      return versions
    end
    local function logged(route)
      return db:query("SELECT count(*) AS n, sum(status = 500) AS failed FROM requests " ..
        "WHERE family = 'sh' AND route = ?", {route})[1]
    end
    -- Polls until the log holds want_production production lines and want_shadow shadow lines
    -- (10 s at most).
    local function settle(want_production, want_shadow)
      local until_t = flare.clock() + 10
      repeat
        flare.sleep(0.1)
        gw:poll()
      until (logged("production").n >= want_production and logged("shadow").n >= want_shadow) or
        flare.clock() > until_t
    end

    -- traffic before the shadow starts (docs/release.md, known problems: a shadow added to a
    -- gateway that had served nothing yet lost mirrored requests)
    assert.same({["sh@v1"] = 64}, send(64, "w"))
    settle(64, 0)
    local route = release.shadow("sh", "sh@v2", {percent = 100, reason = "mirror all",
      registry = reg})
    assert.equal(100, route.shadow_percent)
    gw:poll()
    -- every answer is production's although the shadow fails every request
    assert.same({["sh@v1"] = 200}, send(200, "a"))
    settle(264, 200)
    assert.equal(264, logged("production").n)
    local shadow = logged("shadow")
    assert.equal(200, shadow.n)       -- every request mirrored
    assert.equal(200, shadow.failed)  -- each answer the injected 500, none returned
    local row = db:query("SELECT version FROM requests WHERE route = 'shadow' LIMIT 1")[1]
    assert.equal("sh@v2", row.version)

    -- a 25% shadow: about a quarter mirrored (sd of the count 10.6 at n = 600)
    release.shadow("sh", "sh@v2", {percent = 25, reason = "a quarter", registry = reg})
    gw:poll()
    assert.same({["sh@v1"] = 600}, send(600, "b"))
    settle(864, 200 + 100)
    flare.sleep(0.5)
    gw:poll()
    local quarter = logged("shadow").n - 200
    assert(math.abs(quarter - 150) <= 60, "mirrored " .. quarter .. " of 600")

    -- ended: nothing more is mirrored
    release.shadow("sh", nil, {percent = 0, reason = "done", registry = reg})
    gw:poll()
    assert.is_nil(fs.read_file(dir .. "/gw/nginx.conf"):find("mirror", 1, true))
    local before = logged("shadow").n
    assert.same({["sh@v1"] = 100}, send(100, "c"))
    settle(964, 0)
    flare.sleep(0.5)
    gw:poll()
    assert.equal(before, logged("shadow").n)
    local history = release.get("sh@v2", {registry = reg}).history
    assert.equal("shadow_end", history[#history].action)
    gw:stop()
    prod_em:stop()
    serve:kill(15)
    serve:wait{timeout_s = 10}
    store.close_all()
    fs.remove(dir, {recursive = true})
  end)
end)
