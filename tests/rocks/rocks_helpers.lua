-- Shared by the tests/rocks specs: temp dirs with their own HOME, commands run through
-- bash with flare on PATH, and luarocks called as a user would (`--lua-version 5.1`).
local fs = require("flare.fs")
local json = require("flare.json")
local proc = require("flare.proc")

local M = {}

M.flare = flare.executable
M.bin_dir = M.flare:match("^(.*)/[^/]+$")

function M.quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- A fresh temp dir holding home/ (HOME for every command run here); removed at exit.
function M.workspace()
  local r = proc.run{argv = {"mktemp", "-d", "/tmp/flare-rocks-XXXXXX"}}
  assert(r.status == 0, r.stderr)
  local dir = r.stdout:gsub("%s+$", "")
  fs.mkdir_p(dir .. "/home")
  flare.defer(function() proc.run{argv = {"rm", "-rf", dir}} end, "remove " .. dir)
  return dir
end

-- Runs a bash command in cwd with HOME = ws/home and flare first on PATH; returns
-- status, stdout, stderr. Errors (with the output) when expect_status differs.
function M.sh(ws, cwd, command, expect_status, env)
  local e = {HOME = ws .. "/home", PATH = M.bin_dir .. ":" .. os.getenv("PATH"),
    FLARE_PATH = ""}
  for k, v in pairs(env or {}) do e[k] = v end
  local r = proc.run{argv = {"bash", "-eo", "pipefail", "-c", command}, cwd = cwd, env = e,
    timeout_s = 240}
  if expect_status ~= false and r.status ~= (expect_status or 0) then
    error(string.format("`%s` in %s exited %s (expected %s)\nstdout:\n%s\nstderr:\n%s", command,
      cwd, tostring(r.status), tostring(expect_status or 0), r.stdout, r.stderr), 2)
  end
  return r.status, r.stdout, r.stderr
end

function M.read(path) return assert(fs.read_file(path)) end

function M.write(path, text)
  fs.mkdir_p(path:match("^(.*)/[^/]+$"))
  fs.write_file_atomic(path, text)
end

-- The run directories of a recipe name, oldest first.
function M.run_dirs(root, name)
  local dir = root .. "/runs/" .. name
  if not fs.is_dir(dir) then return {} end
  local out = {}
  for _, n in ipairs(fs.list_dir(dir)) do out[#out + 1] = dir .. "/" .. n end
  return out
end

function M.config(run_dir) return json.decode(M.read(run_dir .. "/config.json")) end

function M.require_luarocks()
  local r = proc.run{argv = {"sh", "-c", "command -v luarocks && command -v luarocks-admin"}}
  assert(r.status == 0, "luarocks is not installed (bash dev.sh installs Debian's luarocks)")
end

-- Publishes `flare new module`'s module at `version` (e.g. "1.0") to the rocks server
-- folder `server`: its M.version set, a rockspec by `luarocks new_version`, installed into a
-- scratch tree, packed, and the server's manifest remade.
function M.publish(ws, src, name, version, server)
  local mod = name:gsub("-", "_")
  local path = src .. "/" .. mod .. ".lua"
  M.write(path, (M.read(path):gsub('M%.version = "[^"]*"', 'M.version = "' .. version .. '"')))
  local rockspec = name .. "-" .. version .. "-1.rockspec"
  M.sh(ws, src, table.concat({
    "rm -f " .. rockspec,
    "luarocks --lua-version 5.1 new_version " .. name .. "-0.1-1.rockspec " .. version,
    "luarocks --lua-version 5.1 make --tree build/rocks " .. rockspec,
    "luarocks --lua-version 5.1 --tree build/rocks pack " .. name .. " " .. version .. "-1",
    "mkdir -p " .. M.quote(server),
    "cp " .. name .. "-" .. version .. "-1.all.rock " .. rockspec .. " " .. M.quote(server),
    "luarocks-admin --lua-version 5.1 make-manifest " .. M.quote(server),
  }, " && "))
end

return M
