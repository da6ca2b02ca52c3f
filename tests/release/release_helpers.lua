-- Helpers the release specs share.
local fs = require("flare.fs")
local release = require("flare.release")
local M = {}

M.BASE = "accounts/local/models/tiny-gpt"

-- A fresh empty folder of its own under /tmp.
function M.temp_dir()
  local dir = os.tmpname()
  os.remove(dir)
  fs.mkdir_p(dir)
  return dir
end

-- fn must raise a flare error with this code and a message matching pattern.
-- (A module sees Lua's own assert, not the spec's: its checks raise plain errors.)
function M.expect_error(fn, code, pattern)
  local ok, err = pcall(fn)
  if ok then error("expected an error matching " .. pattern, 2) end
  local got = type(err) == "table" and err.code or "(string) " .. tostring(err)
  if got ~= code then error("expected error code " .. code .. ", got " .. tostring(got), 2) end
  if not tostring(err.message):match(pattern) then
    error("error message " .. tostring(err.message) .. " does not match " .. pattern, 2)
  end
end

-- Deployment id on the server conn reaches, ready, registered as a version of family with
-- the deployment as its endpoint (stage dev); -> the version's record.
function M.deployed_version(conn, family, id, registry)
  local info = conn.deployments:create_or_get{deployment_id = id, base_model = M.BASE,
    min_replica_count = 1, max_replica_count = 1}
  conn.deployments:wait_for_ready(info.deployment_id, {poll_interval_s = 0.05, timeout_s = 60})
  local v = release.register{family = family, base_model = M.BASE, snapshot = id,
    weights_sha256 = fs.sha256(id), registry = registry}
  release.set_endpoint(v.id, {base_url = conn.inference_url, registry = registry,
    model = "accounts/" .. conn.account_id .. "/deployments/" .. id})
  return v
end

-- One-token completions of model family through the gateway at url, one per user id (its
-- x-user-id), all in flight at once; -> the responses in order.
function M.complete_through(url, key, family, users)
  local handles = {}
  for i, user in ipairs(users) do
    handles[i] = flare.http.submit{method = "POST", url = url .. "/inference/v1/completions",
      headers = {Authorization = "Bearer " .. key, ["Content-Type"] = "application/json",
        ["x-user-id"] = user},
      body = '{"model": "' .. family .. '", "prompt": "ab", "max_tokens": 1}', timeout_s = 30}
  end
  return flare.wait_all(handles)
end

-- Counts responses into tally[version] = {ok =, failed =} (version "?" without the header).
function M.tally(tally, responses)
  for _, r in ipairs(responses) do
    local v = r.headers["x-flare-version"] or "?"
    tally[v] = tally[v] or {ok = 0, failed = 0}
    local k = r.status == 200 and "ok" or "failed"
    tally[v][k] = tally[v][k] + 1
  end
  return tally
end

return M
