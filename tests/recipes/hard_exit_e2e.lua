-- When a process must end without finishing its Lua cleanups (a third Ctrl-C, the
-- SIGTERM grace period over), the cloud resources it created are still released:
-- the C++ client layer remembers them and scales the deployment to zero and
-- deletes the trainer job itself. Checked through the emulator's API afterwards.
local e2e = require("e2e")
local fs = require("flare.fs")

local env

-- Creates a deployment with a replica and a trainer job, registers a cleanup that
-- never returns (it swallows every interrupt), then spins in a compiled loop.
local SCRIPT = [[
local dir = ...
local fs = require("flare.fs")
local function mark(name) fs.write_file_atomic(dir .. "/" .. name, "") end
local fw = require("flare.recipe").connect{quiet = true}
local info = fw.deployments:create_or_get{deployment_id = "kept-busy",
  base_model = "accounts/local/models/tiny-gpt", min_replica_count = 1, max_replica_count = 1}
assert(info.max_replica_count == 1, "the deployment has a replica")
local trainer = fw:trainer{base_model = "accounts/local/models/tiny-gpt",
  job_id = "kept-busy-trainer"}
assert(trainer:get(), "the trainer job exists")
flare.defer(function()
  local function wait()
    mark("in-cleanup")
    while true do flare.sleep(60) end
  end
  while true do pcall(wait) end
end, "stuck")
mark("ready")
local x = 0
while true do x = x + 1 end
]]

local function start()
  local path = env.dir .. "/stuck.lua"
  fs.write_file_atomic(path, SCRIPT)
  local c = e2e.spawn(env, path, {env.dir})
  -- (The emulator runs inside the script's process: its state is read once that has ended.)
  e2e.wait_until("the script's resources",
    function() return fs.exists(env.dir .. "/ready") end, 120)
  flare.sleep(0.3)  -- into the compiled loop
  return c
end

local function assert_released(r)
  assert.matches("releasing 2 cloud resources", r.stderr)
  assert.matches("scaled deployment accounts/[^ ]+/deployments/kept%-busy to zero", r.stderr)
  assert.matches("deleted trainer job accounts/[^ ]+/rlorTrainerJobs/kept%-busy%-trainer", r.stderr)
  local st = e2e.api_state(env)
  assert.equal(0, st.deployments["kept-busy"].max, "replicas left running")
  assert.equal(0, st.deployments["kept-busy"].min)
  assert.is_nil(st.trainer_jobs["kept-busy-trainer"], "trainer job left")
end

describe("hard exit", function()
  before_each(function() env = e2e.scratch() end)
  after_each(function() e2e.remove(env) end)

  it("a third SIGINT during a stuck cleanup releases the deployment and the trainer job", function()
    local c = start()
    c:kill("INT")
    e2e.wait_until("the cleanup", function() return fs.exists(env.dir .. "/in-cleanup") end, 30)
    flare.sleep(0.3)  -- into flare.sleep, whose interrupt the cleanup swallows
    c:kill("INT")
    flare.sleep(0.3)
    c:kill("INT")
    local r = c:wait{timeout_s = 30}
    assert.equal(130, r.status, r.stderr)
    assert_released(r)
  end)

  it("SIGTERM with a stuck cleanup releases them when the grace period is over", function()
    local c = start()
    c:kill("TERM")
    local r = c:wait{timeout_s = 30}
    assert.equal(143, r.status, r.stderr)
    assert.truthy(fs.exists(env.dir .. "/in-cleanup"))
    assert_released(r)
  end)
end)
