-- Shadow traffic on flare gateway: a share of requests is mirrored to a candidate whose
-- answers are logged but never returned. The candidate's emulator fails every completion, so
-- an answer of it reaching a client would show as a failed request. (Not every mirrored
-- request reaches the emulator promptly: docs/release.md, known problems; the test counts
-- what was logged, not the share.)
local release = require("flare.release")
local gateway = require("flare.release.gateway")
local store = require("flare.release.store")
local fs = require("flare.fs")

local BASE = "accounts/local/models/tiny-gpt"

describe("flare gateway shadow", function()
  it("mirrors the share to the shadow, logs its answers and returns only production's", function()
    local dir = os.tmpname()
    os.remove(dir)
    fs.mkdir_p(dir)
    local reg = dir .. "/registry.sqlite"
    local key = "shadow_spec_key_0123456789abcdef"
    local ems = {flare.emulator.start{provision_delay_s = 0.05, api_key = key},
      flare.emulator.start{provision_delay_s = 0.05, api_key = key,
        faults = "/inference/v1/completions:500"}}
    for i, em in ipairs(ems) do
      local c = flare.connect{base_url = em:base_url(), api_key = key, quiet = true}
      local id = "sh-v" .. i
      local info = c.deployments:create_or_get{deployment_id = id, base_model = BASE,
        min_replica_count = 1, max_replica_count = 1}
      c.deployments:wait_for_ready(info.deployment_id, {poll_interval_s = 0.05, timeout_s = 60})
      local v = release.register{family = "sh", base_model = BASE, snapshot = id,
        weights_sha256 = fs.sha256(id), registry = reg}
      release.set_endpoint(v.id, {base_url = c.inference_url, registry = reg,
        model = "accounts/" .. c.account_id .. "/deployments/" .. id})
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
        local handles = {}
        for i = first, math.min(n, first + 63) do
          handles[#handles + 1] = flare.http.submit{method = "POST",
            url = gw.url .. "/inference/v1/completions",
            headers = {Authorization = "Bearer " .. key, ["Content-Type"] = "application/json",
              ["x-user-id"] = prefix .. i},
            body = '{"model": "sh", "prompt": "ab", "max_tokens": 1}', timeout_s = 30}
        end
        for _, r in ipairs(flare.wait_all(handles)) do
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
    -- Polls until want_shadow shadow lines are logged (10 s at most).
    local function settle(want_shadow)
      local deadline = flare.clock() + 10
      repeat
        flare.sleep(0.1)
        gw:poll()
      until logged("shadow").n >= want_shadow or flare.clock() > deadline
    end

    local route = release.shadow("sh", "sh@v2", {percent = 100, reason = "mirror all",
      registry = reg})
    assert.equal(100, route.shadow_percent)
    gw:poll()
    assert.matches("mirror /__flare_shadow;", fs.read_file(dir .. "/gw/nginx.conf"))
    -- every answer is production's although the shadow fails every request
    assert.same({["sh@v1"] = 200}, send(200, "a"))
    settle(1)
    local shadow = logged("shadow")
    assert(shadow.n >= 1, "no mirrored answer logged")
    assert.equal(shadow.n, shadow.failed)  -- each one the injected 500, none returned
    local row = db:query("SELECT version FROM requests WHERE route = 'shadow' LIMIT 1")[1]
    assert.equal("sh@v2", row.version)

    -- a 25% shadow, then none
    release.shadow("sh", "sh@v2", {percent = 25, reason = "a quarter", registry = reg})
    gw:poll()
    assert.matches("25%.00%% 1; %* 0;", fs.read_file(dir .. "/gw/nginx.conf"))
    assert.same({["sh@v1"] = 100}, send(100, "b"))
    release.shadow("sh", nil, {percent = 0, reason = "done", registry = reg})
    gw:poll()
    local conf = fs.read_file(dir .. "/gw/nginx.conf")
    assert.is_nil(conf:find("mirror", 1, true))
    assert.same({["sh@v1"] = 100}, send(100, "c"))
    local history = release.get("sh@v2", {registry = reg}).history
    assert.equal("shadow_end", history[#history].action)
    gw:stop()
    for _, em in ipairs(ems) do em:stop() end
    store.close_all()
    fs.remove(dir, {recursive = true})
  end)
end)
