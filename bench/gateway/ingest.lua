-- Log ingestion CPU per line: N nginx access-log lines (the gateway's log_format, with a
-- prompt, and one feedback line per 10 requests) moved into a fresh registry in polls of
-- BATCH lines by flare.release.gateway.ingest, beside the previous way in the same run
-- (each line decoded alone, a statement prepared for each query, the registry at
-- synchronous=FULL). CPU time from os.clock.
--   build/flare run bench/gateway/ingest.lua [N] [BATCH]
local gateway = require("flare.release.gateway")
local store = require("flare.release.store")
local json = require("flare.json")
local sqlite = require("flare.sqlite")
local fs = require("flare.fs")
local n = tonumber(arg[1]) or 50000
local batch = tonumber(arg[2]) or 2500
local dir = os.tmpname()
os.remove(dir)
fs.mkdir_p(dir)
flare.defer(function()
  store.close_all()
  if previous_db then previous_db:close() end
  fs.remove(dir, {recursive = true})
end)

-- the log's lines, in polls of `batch` lines each
local polls, lines, t0 = {}, {}, 1.7e9
for i = 1, n do
  local id = string.format("%032x", i * 2654435761)
  lines[#lines + 1] = string.format('{"t":%.3f,"route":"%s","version":"fam@v%d","status":%d,' ..
    '"request_time":0.%03d,"upstream_time":"0.%03d","user":"u%d","prompt_tokens":"%d",' ..
    '"completion_tokens":"%d","bytes":%d,"prompt":"What is %d plus %d? Answer with a number.",' ..
    '"id":"%s"}',
    t0 + i * 0.001, i % 20 == 0 and "canary" or "production", i % 20 == 0 and 2 or 1,
    i % 100 == 0 and 502 or 200, 2 + i % 7, 1 + i % 7, i % 50, 12 + i % 9, 1 + i % 5, 300 + i % 40,
    i, i + 1, id)
  if i % 10 == 0 then
    lines[#lines + 1] = string.format('{"t":%.3f,"route":"feedback","id":"%s","score":"%d"}',
      t0 + i * 0.001 + 0.0005, id, i % 2)
  end
  if #lines >= batch or i == n then
    polls[#polls + 1] = table.concat(lines, "\n") .. "\n"
    lines = {}
  end
end

-- the ingestion before this change, kept here as the baseline
local function prompt_text(logged)
  if type(logged) ~= "string" or logged == "" then return nil end
  local ok, text = pcall(json.decode, '"' .. logged .. '"')
  return ok and type(text) == "string" and text or nil
end
local previous_db  -- the registry opened as before: no prepared statement kept
local function previous_ingest(registry, family, log, offset)
  local f = io.open(log, "rb")
  f:seek("set", offset)
  local chunk = f:read(8 * 1024 * 1024)
  f:close()
  local last_nl = chunk:match(".*()\n")
  chunk = chunk:sub(1, last_nl)
  local rows = {}
  for line in chunk:gmatch("[^\n]+") do
    local ok, r = pcall(json.decode, line)
    if ok and type(r) == "table" then rows[#rows + 1] = r end
  end
  local db = previous_db
  store.transaction(db, function()
    for _, r in ipairs(rows) do
      if r.route == "feedback" then
        db:query("UPDATE requests SET feedback = ? WHERE request_id = ? AND family = ?",
          {tonumber(r.score), r.id, family})
      else
        local upstream = tonumber((tostring(r.upstream_time or ""):match("([%d.]+)%s*$")))
        db:query("INSERT INTO requests(family, version, route, at, status, latency_ms, " ..
          "upstream_ms, prompt_tokens, response_bytes, user, prompt, request_id) " ..
          "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
          {family, r.version ~= "" and r.version or nil, r.route, tonumber(r.t),
            tonumber(r.status), (tonumber(r.request_time) or 0) * 1000,
            upstream and upstream * 1000 or nil, tonumber(r.prompt_tokens), tonumber(r.bytes),
            r.user ~= "" and r.user or nil, prompt_text(r.prompt), r.id ~= "" and r.id or nil,
            n = 12})
      end
    end
    db:query("UPDATE gateways SET log_offset = ? WHERE family = ?", {offset + last_nl, "fam"})
  end)
  return #rows, offset + last_nl
end

local function run(name, ingest)
  local registry = dir .. "/" .. name .. ".sqlite"
  local log = dir .. "/" .. name .. ".log"
  local db = store.open(registry)
  store.transaction(db, function()
    db:query("INSERT INTO gateways(family, fingerprint, applied_at, log_offset) " ..
      "VALUES('fam', '-', 0, 0)")
  end)
  local offset, rows, cpu = 0, 0, 0
  for _, text in ipairs(polls) do
    local f = io.open(log, "ab")
    f:write(text)
    f:close()
    local c = os.clock()
    local got
    got, offset = ingest(registry, "fam", log, offset)
    cpu = cpu + os.clock() - c
    rows = rows + got
  end
  local stored = db:query("SELECT count(*) AS n, count(feedback) AS f FROM requests")[1]
  assert(stored.n + stored.f == rows, name .. ": lines lost")
  print(string.format("%-40s %7d lines  %6.2f CPU-µs per line", name, rows, cpu / rows * 1e6))
  return cpu / rows
end

print(string.format("%d requests + %d feedback lines, polls of %d lines", n, math.floor(n / 10), batch))
local before = run("previous", function(registry, ...)
  if not previous_db then
    previous_db = sqlite.open(registry, {busy_timeout_ms = 30000, kept_statements = 0})
    previous_db:exec("PRAGMA synchronous=FULL")
  end
  return previous_ingest(registry, ...)
end)
local after = run("flare.release.gateway.ingest", gateway.ingest)
print(string.format("ratio %.2f (%.2f µs saved per line)", after / before,
  (before - after) * 1e6))
