-- flare.release registry: versions, stage changes with reasons, rollback, two writers
-- at once on one file, and the errors of bad input.
local release = require("flare.release")
local store = require("flare.release.store")
local fs = require("flare.fs")
local json = require("flare.json")
local helpers = require("release_helpers")

local dir, reg

local function weights(name, text)
  local p = dir .. "/" .. name
  fs.write_file_atomic(p, text)
  return p
end

local function reg_opts(t)
  t.registry = reg
  return t
end

local expect_error = helpers.expect_error

describe("flare.release registry", function()
  before_each(function()
    dir = helpers.temp_dir()
    reg = dir .. "/registry.sqlite"
  end)
  after_each(function()
    store.close_all()
    fs.remove(dir, {recursive = true})
  end)

  it("records a version with its run config, data pointer, hash and history", function()
    local run_dir = dir .. "/runs/grpo/1"
    fs.mkdir_p(run_dir)
    fs.write_file_atomic(run_dir .. "/config.json", json.encode{name = "grpo", seed = 7,
      config = {steps = 3, task = "addition"}, flare_version = "0.1.0", script_sha256 = "ab",
      data_files = {{path = "train.jsonl", sha256 = fs.sha256("rows")}}})
    local w = weights("w1.safetensors", "weights one")
    local r = release.register(reg_opts{family = "tg", base_model = "tiny-gpt", snapshot = "s-1",
      weights = w, run_dir = run_dir, by = "alice", evals = {suite_id = "x", slices = {a = {
        mean = 0.5, n = 4}}}})
    assert.equal("tg@v1", r.id)
    assert.equal(fs.sha256("weights one"), r.weights_sha256)
    assert.equal("snapshot", r.kind)
    assert.equal("dev", r.stage)
    assert.equal("alice", r.registered_by)
    assert.equal(7, r.config.seed)
    assert.equal("addition", r.config.config.task)
    assert.same({files = {{path = "train.jsonl", sha256 = fs.sha256("rows")}}}, r.data)
    assert.equal(0.5, r.evals.slices.a.mean)
    assert.equal(1, #r.history)
    assert.equal("register", r.history[1].action)
    -- the same record by id, by hash prefix and by stage alias
    assert.same(r, release.get("tg@v1", {registry = reg}))
    assert.equal("tg@v1", release.get(r.weights_sha256:sub(1, 10), {registry = reg}).id)
    assert.equal("tg@v1", release.get("tg@latest", {registry = reg}).id)
  end)

  it("records the git commit of a script in a work tree, and whether it was modified", function()
    local repo = dir .. "/repo"
    fs.mkdir_p(repo)
    fs.write_file_atomic(repo .. "/train.lua", "print(1)\n")
    local function git(...)
      local r = flare.proc.run{argv = {"git", "-C", repo, "-c", "user.name=t",
        "-c", "user.email=t@example.com", ...}, timeout_s = 30}
      assert.equal(0, r.status, r.stderr)
      return (r.stdout:gsub("%s+$", ""))
    end
    git("init", "-q")
    git("add", "train.lua")
    git("commit", "-q", "-m", "x")
    local head = git("rev-parse", "HEAD")
    local function run_dir(name)
      local d = dir .. "/" .. name
      fs.mkdir_p(d)
      fs.write_file_atomic(d .. "/config.json", json.encode{seed = 1, config = {},
        script = repo .. "/train.lua"})
      return d
    end
    local r = release.register(reg_opts{family = "g", base_model = "b", snapshot = "s1",
      weights_sha256 = fs.sha256("g1"), run_dir = run_dir("r1")})
    assert.equal(head, r.config.git_commit)
    assert.is_nil(r.config.git_dirty)
    fs.write_file_atomic(repo .. "/train.lua", "print(2)\n")
    r = release.register(reg_opts{family = "g", base_model = "b", snapshot = "s2",
      weights_sha256 = fs.sha256("g2"), run_dir = run_dir("r2")})
    assert.equal(head, r.config.git_commit)
    assert.is_true(r.config.git_dirty)
  end)

  it("takes the task generator and seed as the data pointer without data files", function()
    local r = release.register(reg_opts{family = "tg", base_model = "b", adapter = "acct/lora-1",
      weights_sha256 = fs.sha256("x"), config = {seed = 3, config = {task = "vowels"}}})
    assert.same({task = "vowels", seed = 3}, r.data)
    assert.equal("adapter", r.kind)
  end)

  it("hashes an adapter folder by its files' names and contents", function()
    fs.mkdir_p(dir .. "/ad")
    weights("ad/adapter_config.json", "{}")
    weights("ad/adapter_model.safetensors", "tensors")
    local expected = fs.sha256("adapter_config.json\0" .. fs.sha256("{}") .. "\n" ..
      "adapter_model.safetensors\0" .. fs.sha256("tensors") .. "\n")
    local r = release.register(reg_opts{family = "ad", base_model = "b", adapter = "a",
      weights = dir .. "/ad"})
    assert.equal(expected, r.weights_sha256)
  end)

  it("promotes, replaces production, and rolls back to the previous production", function()
    for i = 1, 3 do
      local r = release.register(reg_opts{family = "f", base_model = "b", snapshot = "s" .. i,
        weights_sha256 = fs.sha256("w" .. i)})
      release.promote(r.id, {reason = "eval ok", force = true, registry = reg})
      release.set_production(r.id, {reason = "ship " .. i, registry = reg})
    end
    assert.equal("f@v3", release.production("f", {registry = reg}).id)
    assert.equal("f@v2", release.get("f@v3", {registry = reg}).parent)
    assert.equal("retired", release.get("f@v2", {registry = reg}).stage)
    local back = release.rollback("f", {reason = "error rate 9%", registry = reg, by = "ops"})
    assert.equal("f@v2", back.id)
    assert.equal("production", back.stage)
    local v3 = release.get("f@v3", {registry = reg})
    assert.equal("retired", v3.stage)
    local last = v3.history[#v3.history]
    assert.equal("rollback", last.action)
    assert.equal("ops", last.by)
    assert.matches("rolled back to f@v2: error rate 9%%", last.reason)
    -- a second rollback skips f@v3 (rolled back) and restores f@v1
    assert.equal("f@v1", release.rollback("f", {reason = "again", registry = reg}).id)
    expect_error(function() release.rollback("f", {reason = "x", registry = reg}) end,
      "failed_precondition", "no earlier production version")
  end)

  it("needs a passing gate report for this version to enter staging", function()
    local r = release.register(reg_opts{family = "g", base_model = "b", snapshot = "s",
      weights_sha256 = fs.sha256("g")})
    expect_error(function() release.promote(r.id, {reason = "r", registry = reg}) end,
      "failed_precondition", "needs a passing gate report")
    expect_error(function()
      release.promote(r.id, {reason = "r", registry = reg, gate = {candidate = r.id,
        passed = false, failed = {"slice:reverse"}}})
    end, "failed_precondition", "failed: slice:reverse")
    expect_error(function()
      release.promote(r.id, {reason = "r", registry = reg, gate = {candidate = "g@v9",
        passed = true}})
    end, "failed_precondition", "is for g@v9")
    local p = release.promote(r.id, {reason = "r", registry = reg,
      gate = {candidate = r.id, passed = true, suite_id = "suite-1"}})
    assert.equal("staging", p.stage)
    assert.matches("gate passed, suite suite%-1", p.history[2].reason)
  end)

  it("refuses bad input with errors that name the problem", function()
    release.register(reg_opts{family = "tg", base_model = "tiny-gpt", snapshot = "s",
      weights_sha256 = fs.sha256("a")})
    expect_error(function() release.list("tgg", {registry = reg}) end, "not_found",
      "unknown family 'tgg' %(did you mean 'tg'%?%)")
    expect_error(function() release.get("nope@v1", {registry = reg}) end, "not_found",
      "unknown family 'nope'")
    expect_error(function() release.get("tg@v5", {registry = reg}) end, "not_found",
      "no version tg@v5 %(family tg has v1..v1%)")
    expect_error(function()
      release.register(reg_opts{family = "tg", base_model = "llama", snapshot = "s2",
        weights_sha256 = fs.sha256("b")})
    end, "failed_precondition", "version from another base: family tg builds on tiny%-gpt")
    release.register(reg_opts{family = "other", base_model = "llama", snapshot = "o",
      weights_sha256 = fs.sha256("o")})
    expect_error(function()
      release.register(reg_opts{family = "tg", base_model = "tiny-gpt", snapshot = "s3",
        weights_sha256 = fs.sha256("c"), parent = "other@v1"})
    end, "failed_precondition", "parent other@v1 is a version from another base")
    expect_error(function()
      release.register(reg_opts{family = "tg", base_model = "tiny-gpt", snapshot = "s4",
        weights_sha256 = fs.sha256("a")})
    end, "failed_precondition", "already registered as tg@v1")
    expect_error(function()
      release.register(reg_opts{family = "tg", base_model = "tiny-gpt", snapshot = "s5"})
    end, "invalid_argument", "option 'weights'")
    expect_error(function()
      release.register(reg_opts{family = "tg", base_model = "tiny-gpt", snapshot = "s5",
        weights = dir .. "/missing"})
    end, "invalid_argument", "no such file")
    expect_error(function()
      release.register(reg_opts{family = "tg", base_model = "tiny-gpt", snapshot = "s",
        weights_sha256 = fs.sha256("z"), run_dir = dir .. "/norun"})
    end, "invalid_argument", "no config.json in")
    expect_error(function() release.rollback("tg", {registry = reg}) end, "invalid_argument",
      "option 'reason' is required")
    expect_error(function() release.promote("tg@v1", {reason = "x", to = "prod",
      registry = reg}) end,
      "invalid_argument", "did you mean 'production'")
    -- nothing was written by the refused calls
    assert.equal(1, #release.list("tg", {registry = reg}))
  end)

  it("opens no database outside a sandbox's folders", function()
    fs.mkdir_p(dir .. "/box")
    fs.write_file_atomic(dir .. "/box/t.lua", "flare.sqlite.open(" .. string.format("%q",
      dir .. "/outside.sqlite") .. ")\n")
    local r = flare.proc.run{argv = {flare.executable, "run", "--sandbox", "--run-dir",
      dir .. "/box/runs", dir .. "/box/t.lua"}, cwd = dir .. "/box", timeout_s = 60,
      env = {FLARE_RUNS_DIR = "", FIREWORKS_API_KEY = ""}}
    assert.equal(1, r.status, r.stdout .. r.stderr)
    assert.matches("sandbox: files%.write denied: writing .*outside%.sqlite", r.stderr)
    assert.is_false(fs.exists(dir .. "/outside.sqlite"))
  end)

  it("keeps every version of two writer processes running at once", function()
    local go = dir .. "/go"
    local writer = "tests/release/writer.lua"
    local n = 40
    local a = flare.proc.spawn{argv = {flare.executable, "run", writer, reg, "a", tostring(n), go}}
    local b = flare.proc.spawn{argv = {flare.executable, "run", writer, reg, "b", tostring(n), go}}
    fs.write_file_atomic(go, "")
    local ra, rb = a:wait{timeout_s = 90}, b:wait{timeout_s = 90}
    assert.equal(0, ra.status, ra.stderr)
    assert.equal(0, rb.status, rb.stderr)
    local rows = release.list("conc", {registry = reg})
    assert.equal(2 * n, #rows)
    local seen, by = {}, {a = 0, b = 0}
    for i, r in ipairs(rows) do
      assert.equal(i, r.number)
      assert.equal("staging", r.stage)
      assert.equal(2, #r.history)
      assert(not seen[r.model], "model registered twice: " .. r.model)
      seen[r.model] = true
      by[r.registered_by] = by[r.registered_by] + 1
    end
    assert.same({a = n, b = n}, by)
    -- the writers' transactions interleaved (one after the other would switch once)
    local switches = 0
    for i = 2, #rows do
      if rows[i].registered_by ~= rows[i - 1].registered_by then switches = switches + 1 end
    end
    assert(switches >= 2, "the two writers did not overlap (" .. switches .. " switch)")
    local db = store.open(reg)
    assert.equal("ok", db:query("PRAGMA integrity_check")[1].integrity_check)
    assert.equal("wal", db:query("PRAGMA journal_mode")[1].journal_mode)
  end)
end)
