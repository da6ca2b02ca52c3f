-- flare.release.store: the registry's SQLite file, its schema and transactions.
--
-- Where the registry lives: opts.registry, else $FLARE_REGISTRY, else
-- $XDG_DATA_HOME/flare/registry.sqlite (~/.local/share/flare/registry.sqlite).
-- The file is in WAL mode with a busy timeout, and every change is one
-- BEGIN IMMEDIATE transaction, so two processes may register and promote at once.
local sqlite = require("flare.sqlite")
local fs = require("flare.fs")

local M = {}

local SCHEMA = [[
CREATE TABLE IF NOT EXISTS families(
  family TEXT PRIMARY KEY, base_model TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS versions(
  id TEXT PRIMARY KEY,
  family TEXT NOT NULL REFERENCES families(family),
  number INTEGER NOT NULL,
  weights_sha256 TEXT NOT NULL,
  kind TEXT NOT NULL,
  model TEXT NOT NULL,
  base_model TEXT NOT NULL,
  parent TEXT REFERENCES versions(id),
  run_dir TEXT,
  config TEXT NOT NULL,
  data TEXT NOT NULL,
  evals TEXT NOT NULL,
  stage TEXT NOT NULL,
  created_at REAL NOT NULL,
  updated_at REAL NOT NULL,
  registered_by TEXT NOT NULL,
  UNIQUE(family, number));
CREATE INDEX IF NOT EXISTS versions_by_hash ON versions(weights_sha256);
CREATE TABLE IF NOT EXISTS stage_changes(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  version TEXT NOT NULL REFERENCES versions(id),
  family TEXT NOT NULL,
  from_stage TEXT,
  to_stage TEXT NOT NULL,
  reason TEXT NOT NULL,
  at REAL NOT NULL,
  by TEXT NOT NULL,
  action TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS stage_changes_by_family ON stage_changes(family, seq);
CREATE TABLE IF NOT EXISTS endpoints(
  version TEXT PRIMARY KEY REFERENCES versions(id),
  base_url TEXT NOT NULL,
  model TEXT NOT NULL,
  updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS routes(
  family TEXT PRIMARY KEY REFERENCES families(family),
  canary TEXT REFERENCES versions(id),
  canary_percent REAL NOT NULL DEFAULT 0,
  shadow TEXT REFERENCES versions(id),
  shadow_percent REAL NOT NULL DEFAULT 0,
  updated_at REAL NOT NULL);
-- requests.seq without AUTOINCREMENT: no row is ever deleted, so the rowid keeps increasing,
-- and AUTOINCREMENT's bookkeeping cost the gateway's log ingestion about 0.4 µs a row
CREATE TABLE IF NOT EXISTS requests(
  seq INTEGER PRIMARY KEY,
  family TEXT NOT NULL,
  version TEXT,
  route TEXT NOT NULL,
  at REAL NOT NULL,
  status INTEGER NOT NULL,
  latency_ms REAL NOT NULL,
  upstream_ms REAL,
  prompt_tokens INTEGER,
  completion_tokens INTEGER,
  response_bytes INTEGER,
  user TEXT,
  prompt TEXT,
  request_id TEXT,
  feedback REAL);
CREATE INDEX IF NOT EXISTS requests_by_id ON requests(request_id);
CREATE INDEX IF NOT EXISTS requests_by_version ON requests(family, version, at);
CREATE TABLE IF NOT EXISTS gateways(
  family TEXT PRIMARY KEY,
  fingerprint TEXT NOT NULL,
  applied_at REAL NOT NULL,
  pid INTEGER,
  port INTEGER,
  log_offset INTEGER);
]]

function M.default_path()
  local env = os.getenv("FLARE_REGISTRY")
  if env and env ~= "" then return env end
  local data = os.getenv("XDG_DATA_HOME")
  if not data or data == "" then
    local home = os.getenv("HOME")
    if not home or home == "" then
      flare.error{code = "invalid_argument",
        message = "flare.release: no registry path: set FLARE_REGISTRY, XDG_DATA_HOME or HOME"}
    end
    data = home .. "/.local/share"
  end
  return data .. "/flare/registry.sqlite"
end

local cache = {}

-- The open registry at path (opts.registry or the default), created with its schema.
function M.open(path)
  path = path or M.default_path()
  if type(path) ~= "string" or path == "" then
    flare.error{code = "invalid_argument",
      message = "flare.release: option 'registry' must be a path"}
  end
  local db = cache[path]
  if db then return db end
  local dir = path:match("^(.*)/[^/]*$")
  if dir and dir ~= "" and not fs.is_dir(dir) then fs.mkdir_p(dir) end
  db = sqlite.open(path, {busy_timeout_ms = 30000})
  -- In WAL mode NORMAL syncs at checkpoints, not at every commit: a commit survives the
  -- process crashing; a power loss may undo the last commits, never corrupt the file (the
  -- gateway then re-reads those log lines, as their offset went back with them).
  db:exec("PRAGMA synchronous=NORMAL")
  M.transaction(db, function()
    db:exec(SCHEMA)
    -- columns added since the table was first made (a registry written by an older flare)
    local have = {}
    for _, c in ipairs(db:query("PRAGMA table_info(requests)")) do have[c.name] = true end
    if not have.completion_tokens then
      db:exec("ALTER TABLE requests ADD COLUMN completion_tokens INTEGER")
    end
  end)
  cache[path] = db
  return db
end

-- Runs fn(db) in one write transaction (BEGIN IMMEDIATE takes the write lock at once,
-- waiting up to the busy timeout for another writer); commits, or rolls back and re-raises.
function M.transaction(db, fn)
  db:exec("BEGIN IMMEDIATE")
  local results = {pcall(fn, db)}
  if results[1] then
    db:exec("COMMIT")
    return unpack(results, 2)
  end
  if db:in_transaction() then db:exec("ROLLBACK") end
  error(results[2], 0)
end

-- Closes every registry this process opened (tests reopen files they removed).
function M.close_all()
  for path, db in pairs(cache) do
    db:close()
    cache[path] = nil
  end
end

return M
