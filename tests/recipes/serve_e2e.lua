-- A standalone `flare serve` reached the way a user of the cloud would reach it:
-- FIREWORKS_BASE_URL and FIREWORKS_API_KEY, nothing flare-specific. The GRPO
-- recipe's delta hotloads must then use the server's own delta format.
local e2e = require("e2e")
local fs = require("flare.fs")
local proc = require("flare.proc")

local env, server

local function start_server()
  local out = env.dir .. "/serve.out"
  server = proc.spawn{argv = {"/bin/sh", "-c", 'exec "$0" serve --port 0 --state-dir "$1" ' ..
    '--provision-delay 0.1 > "$1/serve.out"', e2e.flare_exe(), env.dir}}
  local url, key_path
  e2e.wait_until("flare serve to print its URL", function()
    local text = fs.read_file(out) or ""
    url, key_path = text:match("listening on (http://[%d.:]+)"),
      text:match("API key stored in (%S+)")
    return url ~= nil and key_path ~= nil
  end, 30)
  return url, (assert(fs.read_file(key_path)):gsub("%s+$", "")), out
end

describe("flare serve reached through FIREWORKS_BASE_URL", function()
  before_each(function() env = e2e.scratch() end)
  after_each(function()
    if server and server:running() then server:kill(9) end
    e2e.remove(env)
  end)

  it("runs the GRPO recipe with delta hotloads and stops cleanly", function()
    local url, key, out = start_server()
    -- No state dir of its own: the recipe would start an in-process emulator on it instead.
    env.extra_env = {FIREWORKS_BASE_URL = url, FIREWORKS_API_KEY = key,
      FLARE_EMULATOR_STATE_DIR = ""}
    -- base_every=2: steps 1 and 3 hotload deltas, step 2 a base.
    local r = e2e.run(env, "grpo.lua", {"--steps=3", "--group-size=4", "--base-every=2"})
    assert.equal(0, r.status, r.stderr)
    assert.matches("step 3/3", r.stdout)
    assert.falsy((r.stdout .. r.stderr):find(key, 1, true), "the key was printed")
    local checkpoints = e2e.jsonl(e2e.run_dir(env, "grpo") .. "/checkpoints.jsonl")
    assert.equal(3, #checkpoints)
    -- The snapshots landed in the server's bucket, the delta of step 1 among them.
    local bucket = env.dir .. "/buckets/deployment-grpo-tiny"
    assert.truthy(fs.is_dir(bucket), "no bucket of grpo-tiny in the server's state dir")
    local step1
    for _, name in ipairs(fs.list_dir(bucket)) do
      if name:match("^step%-1%-%x+$") then step1 = name end
    end
    assert.truthy(step1, "no step-1 snapshot in " .. bucket)
    assert.truthy(fs.exists(bucket .. "/" .. step1 .. "/model.delta"), "step 1 was not a delta")
    assert.falsy(fs.exists(env.state), "an in-process emulator was started")
    local serve_text = fs.read_file(out)
    assert.matches("FIREWORKS_BASE_URL=" .. url:gsub("%p", "%%%0"), serve_text)
    assert.falsy(serve_text:find(key, 1, true), "flare serve printed the key")
    server:kill(2)
    local done = server:wait{timeout_s = 30}
    assert.equal(0, done.status)
    assert.matches("stopped", fs.read_file(out))
  end)
end)
