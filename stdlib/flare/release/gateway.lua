-- flare.release.gateway: the front of a model family. nginx is the data plane (bench/gateway
-- measured it against a gateway on the emulator's HTTP stack); flare is the control plane:
-- it writes nginx's configuration from the registry, reloads nginx when a route changes, and
-- moves nginx's access log into the registry's requests table.
--
--   local gw = gateway.start{family =, port = 0, registry =, dir =}  -- nginx running
--   gw:poll()      reloads when the registry's route changed, ingests the log; -> changed
--   gw:serve()     poll every 0.2 s until interrupted; gw:stop()
--   gw.port, gw.url, gw.dir
--   gateway.wait_applied(family, {registry =}) -> true once the running gateway serves the
--     family's current route (false without one)
-- Routing: the family's production version serves; a canary (flare.release.canary) gets its
-- percentage of requests, sticky per user id (the x-user-id header; a request without one is
-- placed at random). The model field of an OpenAI or Fireworks request body is rewritten to
-- the chosen version's endpoint model; the answer carries x-flare-version.
local json = require("flare.json")
local fs = require("flare.fs")
local args = require("flare.args")
local store = require("flare.release.store")
local stages = require("flare.release.stages")
local errors = require("flare.release.errors")

local M = {}
local Gateway = {}
Gateway.__index = Gateway
local WHO = "flare.release.gateway"

local function find_nginx()
  for _, p in ipairs({"/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"}) do
    if fs.exists(p) then return p end
  end
  errors.refused("flare gateway needs nginx (Debian package nginx; bash dev.sh installs it)")
end

-- Fireworks (and the emulator) give an answer's token counts in the body's usage (a streamed
-- answer's in its last event); of the headers, only fireworks-prompt-tokens, and not on a
-- streamed answer. nginx's JavaScript module (njs) reads the usage as the body passes.
local NJS_MODULE = "/usr/lib/nginx/modules/ngx_http_js_module.so"
local function check_njs()
  if not fs.exists(NJS_MODULE) then
    errors.refused("flare gateway needs nginx's JavaScript module for token counts " ..
      "(Debian package libnginx-mod-http-js; bash dev.sh installs it)")
  end
end

-- The body filter: the answer passes unchanged; the counts after the last "prompt_tokens" and
-- "completion_tokens" keys in it (the usage comes after the choices) go to
-- $flare_prompt_tokens and $flare_completion_tokens. A module-level variable lives for one
-- request (njs gives each request its own copy), so a count cut between two chunks is read
-- again with the next one. (Searching back for the keys costs nginx about 1.5 µs a request
-- less than a regex over the body; the filter costs 4-5 µs in all, bench/gateway.)
M.USAGE_JS = [[
var tail = '';
function count(text, key, name, r) {
  var i = text.lastIndexOf(key);
  if (i < 0) return;
  var j = i + key.length;
  var m = /^\s*:\s*(\d+)/.exec(text.substring(j, j + 24));
  if (m) r.variables[name] = m[1];
}
function usage(r, data, flags) {
  r.sendBuffer(data, flags);
  if (data.length == 0) return;
  var text = tail.length ? tail + data : data;
  if (text.lastIndexOf('_tokens"') >= 0) {
    count(text, '"prompt_tokens"', 'flare_prompt_tokens', r);
    count(text, '"completion_tokens"', 'flare_completion_tokens', r);
  }
  tail = text.length > 48 ? text.substring(text.length - 48) : text;
}
export default {usage};
]]

local function split_url(url, what)
  local scheme, hostport = url:match("^(https?)://([^/]+)")
  if not scheme then
    errors.refused(what .. " endpoint " .. tostring(url) .. " is not http(s)://host")
  end
  if not hostport:find(":", 1, true) then
    hostport = hostport .. (scheme == "https" and ":443" or ":80")
  end
  return scheme, hostport
end

-- nginx's string literal: the value in double quotes, with \ and " escaped.
local function inner(s)
  return (tostring(s):gsub('[\\"]', "\\%0"):gsub("%$", "${dollar}"))
end
local function q(s) return '"' .. inner(s) .. '"' end

local POOL = "keepalive 64; keepalive_timeout 10s;"

-- The nginx configuration of a route (stages.route) listening on port; /__flare_ready
-- answers with the configuration's generation (x-flare-generation).
function M.render(route, port, dir, generation)
  local prod = route.production
  if not prod then
    errors.refused("family " .. route.family .. " has no production version for the gateway " ..
      "to serve")
  end
  if not prod.endpoint then
    errors.refused(prod.id .. " (production) has no endpoint (flare release endpoint " .. prod.id ..
      " --url URL --model MODEL)")
  end
  local canary, shadow = route.canary, route.shadow
  local scheme, prod_host = split_url(prod.endpoint.base_url, prod.id)
  -- the canary's or the shadow's upstream host; its scheme must be production's
  local function host_of(v, what)
    if not v then return nil end
    local s, host = split_url(v.endpoint.base_url, v.id)
    if s ~= scheme then
      errors.refused("production and " .. what .. " endpoints differ in scheme")
    end
    return host
  end
  local canary_host, shadow_host = host_of(canary, "canary"), host_of(shadow, "shadow")
  local share = canary and string.format("%.2f%%", route.canary_percent) or "0%"
  local log = "access_log " .. dir .. "/access.log "
  local log_opts = " buffer=32k flush=200ms;"
  local lines = {
    "# written by flare gateway for family " .. route.family .. "; do not edit",
    "load_module " .. NJS_MODULE .. ";",
    -- one worker: on a small machine the proxy shares its cores with the upstream, and a
    -- second worker measured no cheaper per request (bench/gateway)
    "worker_processes 1;",
    -- the body's model rewrite and the prompt for drift checks are regexes on every body
    "pcre_jit on;",
    "daemon off;",
    "pid " .. dir .. "/nginx.pid;",
    "error_log " .. dir .. "/error.log warn;",
    "events { worker_connections 4096; }",
    "http {",
    "  geo $dollar { default \"$\"; }",
    "  client_body_temp_path " .. dir .. "/tmp;",
    "  proxy_temp_path " .. dir .. "/tmp;",
    -- nginx's other temporary paths default to /var/lib/nginx, not writable by a user
    "  fastcgi_temp_path " .. dir .. "/tmp;",
    "  uwsgi_temp_path " .. dir .. "/tmp;",
    "  scgi_temp_path " .. dir .. "/tmp;",
    "  js_import flare_usage from " .. dir .. "/usage.js;",
    "  js_var $flare_prompt_tokens;",
    "  js_var $flare_completion_tokens;",
    "  log_format flare escape=json '{\"t\":$msec,\"route\":\"$route\",\"version\":\"$version\",'",
    "    '\"status\":$status,\"request_time\":$request_time,'",
    "    '\"upstream_time\":\"$upstream_response_time\",\"user\":\"$http_x_user_id\",'",
    "    '\"prompt_tokens\":\"$flare_prompt_tokens\",'",
    "    '\"completion_tokens\":\"$flare_completion_tokens\",\"bytes\":$bytes_sent,'",
    "    '\"prompt\":\"$flare_prompt\",\"id\":\"$request_id\"}';",
    "  " .. log .. "flare" .. log_opts,
    "  log_format flare_feedback escape=json '{\"t\":$msec,\"route\":\"feedback\"," ..
      "\"id\":\"$arg_id\",\"score\":\"$arg_score\"}';",
    -- the shadow's answers: a log line each, the version written in (ids are [%w_.-]@vN).
    -- nginx's mirror subrequests are header-only: nginx stops reading the answer after its
    -- headers, so a body filter would see the usage only when it came with them; the prompt
    -- tokens come from the header, the completion tokens are not known.
    shadow and ("  log_format flare_shadow escape=json '{\"t\":$msec,\"route\":\"shadow\"," ..
      "\"version\":\"" .. shadow.id .. "\",\"status\":$status,\"request_time\":$request_time," ..
      "\"upstream_time\":\"$upstream_response_time\",\"user\":\"$http_x_user_id\"," ..
      "\"prompt_tokens\":\"$upstream_http_fireworks_prompt_tokens\",\"bytes\":0}';") or false,
    shadow and ("  split_clients \"${request_id}shadow\" $flare_shadow_on { " ..
      string.format("%.2f%%", route.shadow_percent) .. " 1; * 0; }") or false,
    shadow and ("  map $request_body $flare_shadow_body {") or false,
    shadow and ("    \"~(?s)^(?<pre>.*?\\\"model\\\"\\s*:\\s*\\\")[^\\\"]*(?<post>\\\".*)$\" " ..
      "\"${pre}" .. inner(shadow.endpoint.model) .. "${post}\";") or false,
    shadow and "    default $request_body;" or false,
    shadow and "  }" or false,
    "  map $http_x_user_id $sticky { \"\" $request_id; default $http_x_user_id; }",
    "  split_clients \"$sticky\" $route {",
    canary and ("    " .. share .. " canary;") or false,
    "    * production;",
    "  }",
    "  map $route $version { canary " .. q(canary and canary.id or "") .. "; default " ..
      q(prod.id) .. "; }",
    "  map $route $target_model { canary " .. q(canary and canary.endpoint.model or "") ..
      "; default " .. q(prod.endpoint.model) .. "; }",
    "  map $request_body $flare_body {",
    "    \"~(?s)^(?<pre>.*?\\\"model\\\"\\s*:\\s*\\\")[^\\\"]*(?<post>\\\".*)$\" " ..
      "\"${pre}${target_model}${post}\";",
    "    default $request_body;",
    "  }",
    -- the completions prompt as the body spells it (a JSON string's inside), for drift checks
    "  map $request_body $flare_prompt {",
    "    \"~(?s)\\\"prompt\\\"\\s*:\\s*\\\"(?<p>(?:[^\\\"\\\\\\\\]++|\\\\\\\\.)*+)\\\"\" $p;",
    "    default \"\";",
    "  }",
    -- Up to 64 idle upstream connections per version, closed after 10 s idle: with a smaller
    -- pool than the clients in flight, nginx closes and reopens upstream connections under
    -- load (at 32 against 64 clients, about a quarter more CPU per request in the gateway
    -- and in the upstream, bench/gateway); the timeout gives a server that keeps a worker
    -- per open connection its workers back once the load is gone.
    "  upstream production { server " .. prod_host .. "; " .. POOL .. " }",
    canary and ("  upstream canary { server " .. canary_host .. "; " .. POOL .. " }") or false,
    shadow and ("  upstream shadow { server " .. shadow_host .. "; " .. POOL .. " }") or false,
    "  server {",
    "    listen 127.0.0.1:" .. port .. ";",
    "    keepalive_requests 100000;",
    "    client_max_body_size 16m;",
    "    client_body_buffer_size 16m;",
    "    location = /__flare_ready { access_log off; add_header x-flare-generation " ..
      (generation or 0) .. " always; return 204; }",
    -- a feedback score for an answer (its x-flare-request-id): a log line the gateway
    -- applies to the request's row when it moves the log into the registry
    "    location = /__flare_feedback {",
    "      if ($arg_id !~ \"^[0-9a-f]{32}$\") { return 400; }",
    "      if ($arg_score !~ \"^-?[0-9]+(\\.[0-9]+)?$\") { return 400; }",
    "      " .. log .. "flare_feedback" .. log_opts,
    "      return 204;",
    "    }",
    "    location / {",
    "      proxy_pass " .. scheme .. "://$route;",
    "      proxy_http_version 1.1;",
    "      proxy_set_header Connection \"\";",
    "      proxy_set_body $flare_body;",
    "      proxy_read_timeout 600s;",
    "      proxy_buffering off;",
    "      js_body_filter flare_usage.usage;",
    "      add_header x-flare-version $version always;",
    "      add_header x-flare-request-id $request_id always;",
    shadow and "      mirror /__flare_shadow;" or false,
    shadow and "      mirror_request_body on;" or false,
    "    }",
    shadow and "    location = /__flare_shadow {" or false,
    shadow and "      internal;" or false,
    shadow and "      if ($flare_shadow_on = 0) { access_log off; return 204; }" or false,
    shadow and "      log_subrequest on;" or false,
    shadow and ("      " .. log .. "flare_shadow" .. log_opts) or false,
    shadow and ("      proxy_pass " .. scheme .. "://shadow$request_uri;") or false,
    shadow and "      proxy_http_version 1.1;" or false,
    shadow and "      proxy_set_header Connection \"\";" or false,
    shadow and "      proxy_set_body $flare_shadow_body;" or false,
    shadow and "      proxy_read_timeout 600s;" or false,
    shadow and "    }" or false,
    "  }",
    "}",
  }
  local out = {}
  for _, line in ipairs(lines) do
    if line then out[#out + 1] = line end
  end
  return table.concat(out, "\n") .. "\n"
end

-- The route as the gateways table records what a gateway serves.
local function fingerprint(route)
  return json.encode(route, {sort_keys = true})
end
M.fingerprint = fingerprint

-- Starts nginx on self.port; false when the port was taken (nginx exits at once).
function Gateway:_launch()
  fs.write_file_atomic(self.dir .. "/error.log", "")
  self.child = flare.proc.spawn{argv = {self.nginx, "-e", self.dir .. "/error.log", "-c",
    self.dir .. "/nginx.conf", "-p", self.dir}}
  local deadline = flare.clock() + 10
  while true do
    local ok, r = pcall(flare.http.request, {method = "GET", url = self.url .. "/__flare_ready",
      timeout_s = 1})
    if ok and r.status then return true end
    if not self.child:running() then
      local why = fs.read_file(self.dir .. "/error.log") or ""
      if why:find("Address already in use", 1, true) then return false end
      errors.refused("nginx exited at start: " .. why)
    end
    if flare.clock() > deadline then
      self.child:kill(9)
      errors.refused("nginx did not answer on port " .. self.port)
    end
    flare.sleep(0.05)
  end
end

-- An nginx left by a gateway of this dir that ended without stopping it (SIGKILL) is still
-- serving the old route: it is stopped (gracefully) before the new one starts.
local function stop_leftover(dir)
  local pid = tonumber((fs.read_file(dir .. "/nginx.pid") or ""):match("%d+"))
  if not pid then return end
  local cmdline = (fs.read_file("/proc/" .. pid .. "/cmdline") or ""):gsub("%z", " ")
  if not cmdline:find("nginx", 1, true) or not cmdline:find(dir .. "/nginx.conf", 1, true) then
    return
  end
  flare.proc.run{argv = {"kill", "-QUIT", tostring(pid)}, timeout_s = 10}
  local deadline = flare.clock() + 10
  while fs.exists("/proc/" .. pid) and flare.clock() < deadline do flare.sleep(0.05) end
end

function M.start(o)
  o = args.options(o, {family = "string", port = "nil|number", registry = "nil|string",
    dir = "nil|string", quiet = "nil|boolean", alerts = "nil|table"}, WHO)
  local alert_spec = require("flare.release.alerts").spec(o.alerts)
  if not o.family then errors.invalid(WHO, "option 'family' is required") end
  local port = o.port or 0
  if port < 0 or port > 65535 or port ~= math.floor(port) then
    errors.invalid(WHO, "option 'port' must be a port number (1-65535, 0 = any free one), got " ..
      tostring(port))
  end
  local registry_path = o.registry or store.default_path()
  local route = stages.route(o.family, {registry = registry_path})
  local nginx = find_nginx()
  check_njs()
  local dir = o.dir or (registry_path:match("^(.*)/[^/]*$") or ".") .. "/gateway/" .. o.family
  -- nginx reads the paths of its configuration from its prefix (DIR), not the working dir
  if dir:sub(1, 1) ~= "/" then dir = fs.cwd() .. "/" .. dir:gsub("^%./", "") end
  fs.mkdir_p(dir .. "/tmp")
  stop_leftover(dir)
  fs.write_file_atomic(dir .. "/usage.js", M.USAGE_JS)
  local self = setmetatable({family = o.family, registry = registry_path, dir = dir,
    nginx = nginx, quiet = o.quiet, log_offset = 0, ingested = 0, alerts = alert_spec,
    fired = {}}, Gateway)
  -- a restarted gateway goes on where the last one stopped reading (lines it had not read yet
  -- were written before the restart: they are ingested now)
  local db = store.open(registry_path)
  local last = db:query("SELECT log_offset FROM gateways WHERE family = ?", {o.family})[1]
  local f = io.open(dir .. "/access.log", "rb")
  local size = f and f:seek("end") or 0
  if f then f:close() end
  self.log_offset = last and last.log_offset and last.log_offset <= size and last.log_offset or size
  local rng = require("flare.tasks").rng(flare.time() * 1000 + fs.getpid())
  for attempt = 1, port == 0 and 8 or 1 do
    self.port = port ~= 0 and port or rng:int(20000, 60999)
    self.url = "http://127.0.0.1:" .. self.port
    self:_write(route)
    if attempt == 1 then
      local check = flare.proc.run{argv = {nginx, "-t", "-q", "-e", dir .. "/error.log", "-c",
        dir .. "/nginx.conf", "-p", dir}, timeout_s = 30}
      if check.status ~= 0 then
        errors.refused("nginx refused the configuration: " .. check.stderr)
      end
    end
    if self:_launch() then
      self.cleanup = flare.defer(function() self:stop() end, "stop the gateway of " .. o.family)
      self:_applied(route)
      return self
    end
  end
  errors.refused("port " .. self.port .. " is in use")
end

function Gateway:_write(route)
  self.generation = (self.generation or 0) + 1
  fs.write_file_atomic(self.dir .. "/nginx.conf", M.render(route, self.port, self.dir,
    self.generation))
  self.fingerprint = fingerprint(route)
end

-- Waits until new connections reach the workers of the configuration just written (nginx
-- starts them on SIGHUP; the old ones finish their requests and exit).
function Gateway:_wait_generation()
  local want = tostring(self.generation)
  local deadline = flare.clock() + 10
  while flare.clock() < deadline do
    local ok, r = pcall(flare.http.request, {method = "GET", url = self.url .. "/__flare_ready",
      headers = {Connection = "close"}, timeout_s = 1})
    if ok and r.headers and r.headers["x-flare-generation"] == want then return true end
    flare.sleep(0.01)
  end
  local why = fs.read_file(self.dir .. "/error.log") or ""
  errors.refused("nginx did not take the new configuration within 10 s: " .. why)
end

-- The pids of nginx's worker processes that serve new requests (the master's children, less
-- those of an earlier reload still finishing their requests).
function Gateway:_workers()
  local master = self.child:pid()
  local text = fs.read_file("/proc/" .. master .. "/task/" .. master .. "/children")
  local children = {}
  if text then
    for pid in text:gmatch("%d+") do children[#children + 1] = pid end
  else
    -- a kernel without /proc/PID/task/TID/children: the processes whose parent is the master
    for _, name in ipairs(fs.list_dir("/proc")) do
      local stat = name:match("^%d+$") and fs.read_file("/proc/" .. name .. "/stat")
      if stat and tonumber(stat:match("^%d+ %b() %a (%d+)")) == master then
        children[#children + 1] = name
      end
    end
  end
  local pids = {}
  for _, pid in ipairs(children) do
    local title = fs.read_file("/proc/" .. pid .. "/cmdline") or ""
    if title ~= "" and not title:find("shutting down", 1, true) then pids[#pids + 1] = pid end
  end
  return pids
end

-- How long a reload waits for the old workers to exit before it counts a worker that only
-- finishes requests in flight as gone.
local OLD_WORKERS_WAIT_S = 2

-- Waits until the workers from before a reload are gone. For about 100 ms after starting the
-- new workers, nginx's master lets the old ones go on accepting connections and serving
-- requests on their keep-alive connections with the old configuration; then it tells them to
-- shut down: they stop listening, close their idle keep-alive connections, close the others
-- once their request in flight is answered, and exit when no connection is left. Until then a
-- connection accepted but whose first request had not arrived is still served by an old worker
-- with the old configuration (tested on nginx 1.22). So the route counts as applied once the
-- old workers have exited, or, past OLD_WORKERS_WAIT_S, once they are shutting down (nginx
-- names the process "worker process is shutting down") and only finish requests in flight.
function Gateway:_wait_old_workers(pids)
  local t0 = flare.clock()
  for _, pid in ipairs(pids) do
    while true do
      -- gone, or a zombie (exited, not yet reaped: no command line)
      local title = fs.read_file("/proc/" .. pid .. "/cmdline") or ""
      if title == "" then break end
      local waited = flare.clock() - t0
      if waited > OLD_WORKERS_WAIT_S and title:find("shutting down", 1, true) then break end
      if waited > OLD_WORKERS_WAIT_S + 10 then
        errors.refused("nginx's worker " .. pid .. " from before the reload is not shutting " ..
          "down after " .. math.floor(waited) .. " s")
      end
      flare.sleep(0.005)
    end
  end
end

function Gateway:_applied(route)
  local db = store.open(self.registry)
  store.transaction(db, function()
    db:query("INSERT INTO gateways(family, fingerprint, applied_at, pid, port) " ..
      "VALUES(?, ?, ?, ?, ?) ON CONFLICT(family) DO UPDATE SET " ..
      "fingerprint = excluded.fingerprint, " ..
      "applied_at = excluded.applied_at, pid = excluded.pid, port = excluded.port",
      {self.family, fingerprint(route), flare.time(), self.child:pid(), self.port})
  end)
end

-- The prompt of a log line: nginx logged the body's JSON string content (escaped again).
local function prompt_text(logged)
  if type(logged) ~= "string" or logged == "" then return nil end
  if not logged:find("\\", 1, true) then return logged end  -- nothing escaped twice
  local ok, text = pcall(json.decode, '"' .. logged .. '"')
  return ok and type(text) == "string" and text or nil
end

local INSERT_REQUEST = "INSERT INTO requests(family, version, route, at, status, latency_ms, " ..
  "upstream_ms, prompt_tokens, completion_tokens, response_bytes, user, prompt, request_id) " ..
  "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

local function insert_request(db, family, r)
  -- the last upstream's time ("0.012", or "0.002, 0.012" when nginx tried two)
  local upstream = tonumber(r.upstream_time) or
    tonumber((tostring(r.upstream_time or ""):match("([%d.]+)%s*$")))
  db:query(INSERT_REQUEST,
    {family, r.version ~= "" and r.version or nil, r.route, tonumber(r.t),
      tonumber(r.status), (tonumber(r.request_time) or 0) * 1000,
      upstream and upstream * 1000 or nil, tonumber(r.prompt_tokens),
      tonumber(r.completion_tokens), tonumber(r.bytes),
      r.user ~= "" and r.user or nil, prompt_text(r.prompt),
      r.id ~= "" and r.id or nil, n = 13})
end

-- The lines of a chunk of the access log that decode to JSON objects (a line that does not,
-- e.g. one nginx cut short on a full disk, is skipped: decoded one by one only then).
local function decode_chunk(chunk)
  local ok, values = pcall(json.decode_lines, chunk)
  if ok then return values end
  local rows = {}
  for line in chunk:gmatch("[^\n]+") do
    local ok1, r = pcall(json.decode, line)
    if ok1 and type(r) == "table" then rows[#rows + 1] = r end
  end
  return rows
end

-- Moves the new lines of the access log at `log` (from byte `offset`) into the registry's
-- requests table, and the new offset into the family's gateways row in the same transaction.
-- -> lines ingested, new offset.
function M.ingest(registry, family, log, offset)
  local f = io.open(log, "rb")
  if not f then return 0, offset end
  f:seek("set", offset)
  local chunk = f:read(8 * 1024 * 1024) or ""  -- at most 8 MiB a poll
  f:close()
  local last_nl = chunk:match(".*()\n")
  if not last_nl then return 0, offset end
  local rows = {}
  for _, r in ipairs(decode_chunk(chunk:sub(1, last_nl))) do
    if type(r) == "table" then rows[#rows + 1] = r end
  end
  local db = store.open(registry)
  store.transaction(db, function()
    for _, r in ipairs(rows) do
      if r.route == "feedback" then
        -- after the request's own line (nginx logs an answer before its client can rate it)
        db:query("UPDATE requests SET feedback = ? WHERE request_id = ? AND family = ?",
          {tonumber(r.score), r.id, family})
      else
        insert_request(db, family, r)
      end
    end
    -- in the same transaction: a line is ingested exactly once, across restarts
    db:query("UPDATE gateways SET log_offset = ? WHERE family = ?", {offset + last_nl, family})
  end)
  return #rows, offset + last_nl
end

-- Moves the access log's new lines into the requests table; returns how many.
function Gateway:ingest()
  local n, offset = M.ingest(self.registry, self.family, self.dir .. "/access.log",
    self.log_offset)
  self.log_offset = offset
  self.ingested = self.ingested + n
  return n
end

-- Reloads nginx when the registry's route for the family changed; ingests the log.
function Gateway:poll()
  local route = stages.route(self.family, {registry = self.registry})
  local changed = fingerprint(route) ~= self.fingerprint
  if changed then
    local ok, err = pcall(self._write, self, route)
    if ok then
      local old_workers = self:_workers()
      self.child:kill(1)  -- SIGHUP: nginx re-reads its configuration, old workers finish
      self:_wait_generation()
      self:_wait_old_workers(old_workers)
      self:_applied(route)
      if not self.quiet then
        io.stderr:write(string.format("gateway %s: production %s, canary %s %g%%\n", self.family,
          route.production and route.production.id or "-", route.canary and route.canary.id or "-",
          route.canary_percent))
      end
    elseif not self.quiet then
      io.stderr:write("gateway " .. self.family .. ": route not applied: " .. tostring(err) .. "\n")
    end
  end
  self:ingest()
  -- an alert's rollback changed the route: serve the new one at once
  if self.alerts and self:check_alerts(route) then return self:poll() or true end
  return changed
end

local function note(self, message)
  self.fired[#self.fired + 1] = message
  if not self.quiet then io.stderr:write("gateway " .. self.family .. ": " .. message .. "\n") end
end

-- A fired alert on the canary ends it; on a production version changed less than rollout_s
-- ago, it rolls back to the previous production version. Returns the message or nil.
function Gateway:check_alerts(route)
  local alerts = require("flare.release.alerts")
  local spec = self.alerts
  local db = store.open(self.registry)
  local now = flare.time()
  if route.canary then
    local started = db:query("SELECT updated_at FROM routes WHERE family = ?", {self.family})[1]
    local since = math.max(now - spec.window_s, started and started.updated_at or 0)
    local m = M.metrics(self.family, {registry = self.registry, since = since,
      version = route.canary.id})[1]
    local fired = alerts.fired(m, spec)
    if #fired > 0 then
      local why = "alert on canary " .. route.canary.id .. ": " .. table.concat(fired, "; ")
      stages.canary(self.family, nil, {percent = 0, reason = "automatic rollback: " .. why,
        registry = self.registry, by = "flare gateway"})
      note(self, why .. "; canary ended")
      return why
    end
  end
  if route.production then
    local change = db:query("SELECT at FROM stage_changes WHERE version = ? AND " ..
      "to_stage = 'production' ORDER BY seq DESC LIMIT 1", {route.production.id})[1]
    if change and now - change.at < spec.rollout_s then
      local m = M.metrics(self.family, {registry = self.registry,
        since = math.max(change.at, now - spec.window_s), version = route.production.id})[1]
      local fired = alerts.fired(m, spec)
      if #fired > 0 then
        local why = "alert on rollout of " .. route.production.id .. ": " ..
          table.concat(fired, "; ")
        local ok, err = pcall(stages.rollback, self.family, {reason = "automatic rollback: " ..
          why, registry = self.registry, by = "flare gateway"})
        note(self, why .. (ok and "; rolled back" or ("; no rollback: " .. tostring(
          type(err) == "table" and err.message or err))))
        return why
      end
    end
  end
  return nil
end

function Gateway:serve(o)
  o = o or {}
  local interval = o.interval_s or 0.2
  while self.child:running() do
    self:poll()
    flare.sleep(interval)
  end
  errors.refused("nginx exited: " .. (fs.read_file(self.dir .. "/error.log") or ""))
end

function Gateway:stop()
  if self.stopped then return end
  self.stopped = true
  if self.child and self.child:running() then
    self.child:kill(3)  -- SIGQUIT: graceful, in-flight requests finish
    local r = self.child:wait{timeout_s = 10}
    if r.timed_out then self.child:kill(9) end
  end
  pcall(self.ingest, self)
end

-- `flare gateway` as a child process (it polls the registry on its own while this process
-- runs a rollout or a replay): -> {url =, proc =, stop = fn}, once it serves.
function M.spawn(o)
  o = args.options(o, {family = "string", registry = "string", dir = "nil|string",
    alerts = "nil|table"}, "flare.release.gateway.spawn")
  local argv = {flare.executable, "gateway", o.family, "--registry", o.registry}
  if o.dir then argv[#argv + 1] = "--dir"; argv[#argv + 1] = o.dir end
  for flag, key in pairs(require("flare.release.alerts").flags) do
    if o.alerts and o.alerts[key] then
      argv[#argv + 1] = "--" .. flag
      argv[#argv + 1] = tostring(o.alerts[key])
    end
  end
  local started = flare.time()
  local proc = flare.proc.spawn{argv = argv}
  local db = store.open(o.registry)
  local deadline = flare.clock() + 30
  while flare.clock() < deadline do
    local g = db:query("SELECT port, applied_at FROM gateways WHERE family = ?", {o.family})[1]
    if g and g.applied_at >= started then
      local gw = {url = "http://127.0.0.1:" .. g.port, proc = proc}
      function gw.stop()
        if proc:running() then proc:kill(15) end
        return proc:wait{timeout_s = 15}
      end
      return gw
    end
    if not proc:running() then
      errors.refused("flare gateway exited at start: " .. tostring(proc:wait{}.stderr))
    end
    flare.sleep(0.05)
  end
  proc:kill(9)
  errors.refused("flare gateway did not start within 30 s")
end

-- Waits until the family's running gateway serves the family's route as the registry has it
-- now (its workers from before the reload gone: a request sent afterwards gets the new route);
-- -> true, or false and "no gateway" (none of the family runs) or "timeout" (it did not apply
-- the route within timeout_s, 10 by default: see its output).
function M.wait_applied(family, o)
  o = o or {}
  local db = store.open(o.registry)
  local deadline = flare.clock() + (o.timeout_s or 10)
  while true do
    local g = db:query("SELECT fingerprint, pid FROM gateways WHERE family = ?", {family})[1]
    if not g or not g.pid or not fs.exists("/proc/" .. g.pid) then return false, "no gateway" end
    if g.fingerprint == fingerprint(stages.route(family, {registry = o.registry})) then
      return true
    end
    if flare.clock() > deadline then return false, "timeout" end
    flare.sleep(0.02)
  end
end

-- Records a feedback score for a request the gateway served (its x-flare-request-id answer
-- header); the request must be in the requests table already (the gateway moves its log
-- there every poll). -> the version that answered it.
function M.feedback(request_id, score, o)
  local who = "flare.release.feedback"
  if type(request_id) ~= "string" or not request_id:match("^%x+$") then
    errors.invalid(who, "argument 'request_id' must be the x-flare-request-id of an answer, got " ..
      tostring(request_id))
  end
  if type(score) ~= "number" or score ~= score then
    errors.invalid(who, "argument 'score' must be a number, got " .. tostring(score))
  end
  local db = store.open((o or {}).registry)
  return store.transaction(db, function()
    local row = db:query("SELECT version FROM requests WHERE request_id = ?", {request_id})[1]
    if not row then
      errors.not_found("no request " .. request_id .. " in the requests table (the gateway " ..
        "logs a request within about 0.5 s of its answer)")
    end
    db:query("UPDATE requests SET feedback = ? WHERE request_id = ?", {score, request_id})
    return row.version
  end)
end

-- Live metrics of each version over the last window_s seconds of logged requests (or since
-- `since`; only `version` when given): n, p50_ms, p95_ms, p99_ms, error_rate (5xx),
-- timeout_rate (504), tokens_per_request (prompt + completion; of the requests whose answer
-- gave them), prompt_tokens_per_request, completion_tokens_per_request, mean_feedback.
function M.metrics(family, o)
  o = o or {}
  local db = store.open(o.registry)
  local since = o.since or (flare.time() - (o.window_s or 60))
  local out = {}
  local sql = "SELECT version, status, latency_ms, prompt_tokens, completion_tokens, feedback " ..
    "FROM requests " ..
    "WHERE family = ? AND at >= ?"
  local params = {family, since}
  if o.version then
    sql = sql .. " AND version = ?"
    params[3] = o.version
  end
  local rows = db:query(sql .. " ORDER BY latency_ms", params)
  local by = {}
  for _, r in ipairs(rows) do
    local v = r.version or "-"
    local m = by[v]
    if not m then
      m = {version = v, latencies = {}, errors = 0, timeouts = 0, n = 0, prompt = {},
        completion = {}, feedback = {}}
      by[v] = m
      out[#out + 1] = m
    end
    m.n = m.n + 1
    m.latencies[#m.latencies + 1] = r.latency_ms
    if r.status >= 500 then m.errors = m.errors + 1 end
    if r.status == 504 then m.timeouts = m.timeouts + 1 end
    if r.prompt_tokens then m.prompt[#m.prompt + 1] = r.prompt_tokens end
    if r.completion_tokens then m.completion[#m.completion + 1] = r.completion_tokens end
    if r.feedback then m.feedback[#m.feedback + 1] = r.feedback end
  end
  local stats = require("flare.release.stats")
  for _, m in ipairs(out) do
    m.p50_ms = stats.percentile(m.latencies, 0.5)
    m.p95_ms = stats.percentile(m.latencies, 0.95)
    m.p99_ms = stats.percentile(m.latencies, 0.99)
    m.error_rate = m.errors / m.n
    m.timeout_rate = m.timeouts / m.n
    m.prompt_tokens_per_request = #m.prompt > 0 and stats.mean(m.prompt) or nil
    m.completion_tokens_per_request = #m.completion > 0 and stats.mean(m.completion) or nil
    m.tokens_per_request = (m.prompt_tokens_per_request or 0) +
      (m.completion_tokens_per_request or 0)
    m.mean_feedback = #m.feedback > 0 and stats.mean(m.feedback) or nil
    m.latencies, m.feedback, m.prompt, m.completion = nil, nil, nil, nil
  end
  table.sort(out, function(a, b) return a.version < b.version end)
  return out
end

return M
