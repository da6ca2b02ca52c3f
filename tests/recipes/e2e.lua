-- Helpers for the end-to-end recipe tests: a scratch directory with its own
-- emulator state dir and runs dir, `flare run` of a recipe as a child process,
-- and a look at the emulator's state through the API (from another child, so
-- that only one process uses the state dir at a time).
local proc = require("flare.proc")
local fs = require("flare.fs")
local json = require("flare.json")

local M = {}

local function absolute(p) return p:sub(1, 1) == "/" and p or (fs.cwd() .. "/" .. p) end
local here = absolute(debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".")
M.root = absolute(os.getenv("FLARE_SOURCE_DIR") or (here .. "/../.."))

function M.scratch()
  local dir = "/tmp/flare-e2e-" .. fs.getpid() .. "-" .. math.floor(flare.clock() * 1e6)
  fs.mkdir_p(dir)
  return {dir = dir, state = dir .. "/emulator", runs = dir .. "/runs"}
end

function M.remove(env) fs.remove(env.dir, {recursive = true}) end

local function child_env(env)
  local e = {FLARE_EMULATOR_STATE_DIR = env.state, FLARE_RUNS_DIR = env.runs,
    FLARE_EMULATOR_URL = "",
    FIREWORKS_API_KEY = "", FIREWORKS_BASE_URL = ""}
  for k, v in pairs(env.extra_env or {}) do e[k] = v end
  return e
end

-- Path of the flare executable running this test (for children that need it by name).
function M.flare_exe()
  local p = io.popen("readlink /proc/" .. fs.getpid() .. "/exe")
  local exe = p:read("*l")
  p:close()
  return exe
end

local function argv_for(script, args)
  local path = script:find("/") and script or (M.root .. "/scripts/" .. script)
  local argv = {"/proc/self/exe", "run", path}
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  return argv
end

-- Runs a recipe to completion; returns the proc result. env.extra_env adds to (or overrides)
-- the child's environment.
function M.run(env, script, args, timeout_s)
  return proc.run{argv = argv_for(script, args), env = child_env(env), cwd = env.dir,
    timeout_s = timeout_s or 240}
end

function M.spawn(env, script, args)
  return proc.spawn{argv = argv_for(script, args), env = child_env(env), cwd = env.dir}
end

-- {deployments = {[id] = {state, min, max}}, trainer_jobs = {[id] = state}} from the emulator.
function M.api_state(env)
  local r = M.run(env, here .. "/inspect_emulator.lua", {}, 60)
  if r.status ~= 0 then error("inspect_emulator failed: " .. r.stderr) end
  return json.decode(r.stdout:match("([^\n]+)\n*$"))
end

-- The single run directory of a recipe under the scratch runs dir.
function M.run_dir(env, name)
  local root = env.runs .. "/" .. name
  local names = fs.is_dir(root) and fs.list_dir(root) or {}
  return names[#names] and (root .. "/" .. names[#names]) or nil
end

function M.jsonl(path)
  return require("flare.recipe").read_jsonl(path)
end

-- Waits until fn() is true (polling), or fails after timeout_s.
function M.wait_until(what, fn, timeout_s)
  local deadline = flare.clock() + (timeout_s or 120)
  while flare.clock() < deadline do
    if fn() then return end
    flare.sleep(0.1)
  end
  error("timed out waiting for " .. what)
end

return M
