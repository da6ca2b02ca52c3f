-- `flare release` as a user meets it: records printed, exit statuses, and a clear error
-- for each kind of bad input (unknown family, a version from another base, a missing
-- suite, bad options), with the registry from --registry or FLARE_REGISTRY.
local fs = require("flare.fs")
local json = require("flare.json")
local helpers = require("release_helpers")

local dir, reg

local function release(args, env)
  local argv = {flare.executable, "release"}
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return flare.proc.run{argv = argv, timeout_s = 60, env = env}
end

local function with_reg(args)
  local out = {"--registry", reg}
  for _, a in ipairs(args) do out[#out + 1] = a end
  return release(out)
end

describe("flare release", function()
  before_each(function()
    dir = helpers.temp_dir()
    reg = dir .. "/reg.sqlite"
    fs.write_file_atomic(dir .. "/w1", "one")
    fs.write_file_atomic(dir .. "/w2", "two")
  end)
  after_each(function() fs.remove(dir, {recursive = true}) end)

  it("registers, lists, shows and rolls back", function()
    local r = with_reg{"register", "--family", "tg", "--base-model", "tiny-gpt", "--snapshot", "s1",
      "--weights", dir .. "/w1"}
    assert.equal(0, r.status, r.stderr)
    assert.matches("registered tg@v1 %(weights sha256 " .. fs.sha256("one") .. "%)", r.stdout)
    assert.equal(0, with_reg{"register", "--family", "tg", "--base-model", "tiny-gpt",
      "--snapshot", "s2", "--weights", dir .. "/w2"}.status)
    for _, id in ipairs({"tg@v1", "tg@v2"}) do
      assert.equal(0, with_reg{"promote", id, "--reason", "smoke", "--force"}.status)
      local p = with_reg{"promote", id, "--reason", "ship " .. id}
      assert.equal(0, p.status, p.stderr)
      assert.matches(id .. " is now production", p.stdout)
    end
    local list = with_reg{"list", "tg"}
    assert.equal(0, list.status)
    assert.matches("tg@v1 +retired", list.stdout)
    assert.matches("tg@v2 +production", list.stdout)
    local back = with_reg{"rollback", "tg", "--reason", "p95 latency doubled"}
    assert.equal(0, back.status, back.stderr)
    assert.matches("tg@v1 is now production", back.stdout)
    local show = with_reg{"show", "tg@v2"}
    assert.matches("stage +retired", show.stdout)
    assert.matches("production %-> retired +rolled back to tg@v1: p95 latency doubled", show.stdout)
    local js = json.decode(with_reg{"show", "tg@production", "--json"}.stdout)
    assert.equal("tg@v1", js.id)
    -- FLARE_REGISTRY names the same file
    local env = release({"list", "tg"}, {FLARE_REGISTRY = reg})
    assert.equal(0, env.status, env.stderr)
    assert.matches("tg@v2", env.stdout)
  end)

  it("defaults to the XDG data dir", function()
    local env = {XDG_DATA_HOME = dir .. "/xdg", FLARE_REGISTRY = ""}
    local r = release({"register", "--family", "x", "--base-model", "b", "--snapshot", "s",
      "--weights", dir .. "/w1"}, env)
    assert.equal(0, r.status, r.stderr)
    assert(fs.exists(dir .. "/xdg/flare/registry.sqlite"), "no registry in XDG_DATA_HOME")
  end)

  it("says what is wrong with bad input", function()
    assert.equal(0, with_reg{"register", "--family", "tg", "--base-model", "tiny-gpt",
      "--snapshot", "s1", "--weights", dir .. "/w1"}.status)
    local cases = {
      {{"list", "tgx"}, 1, "unknown family 'tgx' %(did you mean 'tg'%?%)"},
      {{"show", "tg@v7"}, 1, "no version tg@v7 %(family tg has v1..v1%)"},
      {{"show", "zz@v1"}, 1, "unknown family 'zz'"},
      {{"show", "tg"}, 1, "'tg' is a family; a version is tg@vN"},
      {{"rollback", "tg", "--reason", "x"}, 1, "family tg has no production version"},
      {{"rollback", "nope", "--reason", "x"}, 1, "unknown family 'nope'"},
      {{"rollback", "tg"}, 2, "%-%-reason TEXT is required"},
      {{"register", "--family", "tg", "--base-model", "llama-3", "--snapshot", "s9", "--weights",
        dir .. "/w2"}, 1,
          "version from another base: family tg builds on tiny%-gpt, this version on llama%-3"},
      {{"register", "--family", "tg", "--base-model", "tiny-gpt", "--snapshot", "s9"}, 1,
        "option 'weights'"},
      {{"promote", "tg@v1", "--reason", "r"}, 1, "needs a passing gate report"},
      {{"promote", "tg@v1", "--reason", "r", "--gate", dir .. "/none.json"}, 1,
        "option 'gate': no such file"},
      {{"gate", "--suite", dir .. "/none.json", "--baseline", "b", "--candidate", "c"}, 1,
        "missing suite: no file"},
      {{"gate", "--baseline", "b", "--candidate", "c"}, 2, "gate: %-%-suite is required"},
      {{"list"}, 2, "list: one FAMILY is required"},
      {{"lsit", "tg"}, 2, "unknown command 'lsit' %(did you mean 'list'%?%)"},
      {{"list", "tg", "--jsno"}, 2, "unknown option %-%-jsno %(did you mean 'json'%?%)"},
      {{"drift", "--train", dir .. "/none", "--live", dir .. "/w1"}, 1, "%-%-train: no file"},
      {{"canary", "tg", "tg@v1", "--percent", "150", "--reason", "x"}, 1,
        "option 'percent' must be a traffic share from 0 to 100, got 150"},
      {{"canary", "tg", "tg@v1", "--percent", "-5", "--reason", "x"}, 1,
        "traffic share from 0 to 100, got %-5"},
      {{"canary", "tg", "tg@v1", "--percent", "ten", "--reason", "x"}, 2,
        "%-%-percent expects a number, got 'ten'"},
      {{"canary", "tgg", "tg@v1", "--percent", "5", "--reason", "x"}, 1, "unknown family 'tgg'"},
      {{"canary", "tg", "tg@v1", "--percent", "5", "--reason", "x"}, 1,
        "tg@v1 has no endpoint"},
      {{"endpoint", "tg@v1", "--url", "ftp://x", "--model", "m"}, 1,
        "option 'base_url' must be http://host:port"},
      {{"metrics", "nope"}, 1, "unknown family 'nope'"},
      {{"drift", "--train", dir .. "/w1", "--family", "nope"}, 1, "unknown family 'nope'"},
      {{"drift", "--train", dir .. "/w1", "--family", "tg"}, 1,
        "no prompts of family tg logged by flare gateway"},
      {{"drift", "--train", dir .. "/w1"}, 2, "one of %-%-live FILE or %-%-family FAMILY"},
    }
    for _, c in ipairs(cases) do
      local r = with_reg(c[1])
      assert.equal(c[2], r.status, table.concat(c[1], " ") .. ": " .. r.stdout .. r.stderr)
      assert.matches(c[3], r.stderr)
      assert.matches("^flare: release: ", r.stderr)
    end
    local gw = flare.proc.run{argv = {flare.executable, "gateway", "nope", "--registry", reg},
      timeout_s = 30}
    assert.equal(1, gw.status)
    assert.matches("^flare: gateway: .*unknown family 'nope' %(families: tg%)", gw.stderr)
    gw = flare.proc.run{argv = {flare.executable, "gateway", "tg", "--registry", reg},
      timeout_s = 30}
    assert.equal(1, gw.status)
    assert.matches("family tg has no production version for the gateway", gw.stderr)
    gw = flare.proc.run{argv = {flare.executable, "gateway", "tg", "--alert-error-rate", "lots"},
      timeout_s = 30}
    assert.equal(2, gw.status)
    assert.matches("%-%-alert%-error%-rate expects a number, got 'lots'", gw.stderr)
    gw = flare.proc.run{argv = {flare.executable, "gateway", "tg", "--registry", reg,
      "--alert-error-rate", "120"}, timeout_s = 30}
    assert.equal(1, gw.status)
    assert.matches("option 'max_error_rate_pct' must be from 0 to 100, got 120", gw.stderr)
    gw = flare.proc.run{argv = {flare.executable, "gateway", "tg", "--prot", "1"}, timeout_s = 30}
    assert.equal(2, gw.status)
    assert.matches("unknown option %-%-prot %(did you mean 'port'%?%)", gw.stderr)
    -- refused commands changed nothing
    local js = json.decode(with_reg{"list", "tg", "--json"}.stdout)
    assert.equal(1, #js)
    assert.equal("dev", js[1].stage)
  end)
end)
