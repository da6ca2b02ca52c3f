-- flare.connect(opts) -> fw, a connection to the Fireworks REST protocol or to flare's emulator.
--   opts (all optional): api_key, base_url, inference_url, hotload_api_url (each defaulting to
--   base_url), additional_headers = {name = value}, verify_ssl (default: on for https URLs whose
--   host is a name, off for http and bare IPs), timeout_s = 60, connect_timeout_s = 10,
--   backend = "emulator" | "cloud", quiet = false (no progress lines), account_id (skips the
--   lookup), poll_intervals = {deployment =, deletion =, hotload =, trainer =, warmup =}
--   (seconds between status polls of each kind of wait; see fw:poll_interval), and for the
--   in-process emulator: state_dir, provision_delay_s, idle_timeout_s, faults.
-- Environment: FIREWORKS_API_KEY, FIREWORKS_BASE_URL, FIREWORKS_INFERENCE_URL,
-- FIREWORKS_HOTLOAD_URL.
-- With no key and no URL (or backend = "emulator" without a base_url) the emulator is started in
-- this process on a free loopback port (once per Lua state; it stops when the state closes).
-- The account id is resolved with GET /v1/accounts?pageSize=2 (exactly one account).
--
--   fw.deployments                  DeploymentManager (flare.fireworks.deployments)
--   fw.engines                      engines serving LoRA addons (flare.fireworks.engines)
--   fw:trainer{...}                 trainer client (flare.fireworks.trainer)
--   fw:sampler{...}                 DeploymentSampler (flare.fireworks.sampler)
--   fw.base_url, fw.inference_url, fw.hotload_api_url, fw.account_id, fw.backend ("emulator" also
--   for a `flare serve` reached by URL: its account lookup names its delta format,
--   fw.delta_format),
--   fw.verify_ssl, fw.additional_headers, fw.timeout_s, fw.api_key (never printed:
--   tostring(fw) and every error show it redacted), fw.emulator (in-process emulator or nil)
--   fw:poll_interval(kind)          the default poll interval of waits of that kind: the SDK's
--                                   against the cloud (deployment 15, deletion 2, hotload 5,
--                                   trainer 5, warmup retry 10 s), short against the emulator,
--                                   whose states change in milliseconds; a wait's own
--                                   poll_interval_s option wins
--   fw:set_faults(spec)             emulator only: the fault injection rules
--                                   (see `flare serve --help`)
--   fw:request{...}, fw:submit{...} raw authenticated calls (see bindings/fireworks.cpp)
local native = require("flare.fireworks")
local options = require("flare.fireworks.options")

local spec = {
  api_key = "string", base_url = "string", inference_url = "string", hotload_api_url = "string",
  additional_headers = "table", verify_ssl = "boolean", timeout_s = "number",
    connect_timeout_s = "number",
  backend = "string", quiet = "boolean", account_id = "string", state_dir = "string",
  provision_delay_s = "number", idle_timeout_s = "number", faults = "string",
  poll_intervals = "table",
}

-- Default seconds between status polls, by backend and kind of wait.
local POLL_INTERVALS = {
  cloud = {deployment = 15, deletion = 2, hotload = 5, trainer = 5, warmup = 10},
  emulator = {deployment = 0.25, deletion = 0.1, hotload = 0.05, trainer = 0.25, warmup = 0.25},
}

local emulator_instance  -- the in-process emulator of this Lua state

local function start_emulator(opts)
  if emulator_instance then return emulator_instance end
  local em = require("flare.emulator")
  emulator_instance = em.start{state_dir = opts.state_dir,
    provision_delay_s = opts.provision_delay_s,
    idle_timeout_s = opts.idle_timeout_s, faults = opts.faults}
  return emulator_instance
end

local Fw = {}

Fw.__index = function(self, k)
  if k == "api_key" then return rawget(self, "_conn"):api_key() end
  return Fw[k]
end

Fw.__tostring = function(self)
  return string.format("flare.connect(%s %s, account %s, key %s)", self.backend, self.base_url,
    tostring(self.account_id), native.redact_key(rawget(self, "_conn"):api_key() or ""))
end

function Fw:_native() return rawget(self, "_conn") end

function Fw:_quiet(opts)
  if opts and opts.quiet ~= nil then return opts.quiet end
  return self.quiet
end

function Fw:poll_interval(kind)
  local v = self.poll_intervals[kind]
  if not v then
    options.raise("invalid_argument", "poll_interval: unknown kind '" .. tostring(kind) .. "'")
  end
  return v
end

function Fw:request(req) return rawget(self, "_conn"):request(req) end
function Fw:submit(req) return rawget(self, "_conn"):submit(req) end

function Fw:trainer(opts) return require("flare.fireworks.trainer").new(self, opts) end
function Fw:sampler(opts) return require("flare.fireworks.sampler").new(self, opts) end

function Fw:set_faults(spec_text)
  if self.backend ~= "emulator" then
    options.raise("invalid_argument", "set_faults: fault injection exists only on the emulator")
  end
  self:request{method = "POST", path = "/admin/v1/faults", body = {spec = spec_text or ""},
    retries = 1,
    what = "set emulator faults"}
end

function Fw:faults()
  return self:request{path = "/admin/v1/faults", what = "read emulator faults"}.body
end

local function env(name)
  local v = os.getenv(name)
  if v == "" then return nil end
  return v
end

local function resolve_account(fw)
  -- The first call: a mistyped URL fails within seconds, not after the full retry budget.
  local r = fw:request{path = "/v1/accounts?pageSize=2", retries = 3,
    what = "look up the account of the API key"}
  local accounts = r.body and r.body.accounts or {}
  if #accounts ~= 1 then
    options.raise("account_lookup_failed", "connect: the API key gives access to " .. #accounts ..
      " accounts (expected exactly one); pass account_id explicitly")
  end
  local id = tostring(accounts[1].name or ""):match("^accounts/(.+)$")
  if not id then options.raise("account_lookup_failed",
    "connect: unexpected account name in GET /v1/accounts") end
  return id, (r.headers or {})["x-flare-delta-format"]
end

local function connect(opts)
  opts = options.check(opts, spec, "flare.connect")
  local backend = opts.backend
  if backend and backend ~= "emulator" and backend ~= "cloud" then
    options.raise("invalid_argument",
      "flare.connect: backend must be \"emulator\" or \"cloud\", got \"" .. backend .. "\"")
  end
  local key = opts.api_key
  local base = opts.base_url
  local inference, hotload = opts.inference_url, opts.hotload_api_url
  if backend ~= "emulator" then
    key = key or env("FIREWORKS_API_KEY")
    base = base or env("FIREWORKS_BASE_URL")
    inference = inference or env("FIREWORKS_INFERENCE_URL")
    hotload = hotload or env("FIREWORKS_HOTLOAD_URL")
  end
  backend = backend or ((key == nil and base == nil) and "emulator" or "cloud")
  local emulator
  if backend == "emulator" and not base then
    emulator = start_emulator(opts)
    base, key = emulator:base_url(), emulator:api_key()
  elseif backend == "cloud" then
    base = base or "https://api.fireworks.ai"
    if not key then
      options.raise("invalid_argument",
        "flare.connect: no API key; set FIREWORKS_API_KEY or pass api_key " ..
        "(or connect with no key and no URL to use the local emulator)")
    end
  end
  local conn = native.connection{api_key = key or "", base_url = base, inference_url = inference,
    hotload_api_url = hotload, additional_headers = opts.additional_headers,
      timeout_s = opts.timeout_s,
    connect_timeout_s = opts.connect_timeout_s, verify_ssl = opts.verify_ssl}
  local verify = opts.verify_ssl
  if verify == nil then verify = native.default_verify_ssl(base) end
  local fw = setmetatable({
    _conn = conn, backend = backend, base_url = base:gsub("/+$", ""),
    inference_url = (inference or base):gsub("/+$", ""),
      hotload_api_url = (hotload or base):gsub("/+$", ""),
    additional_headers = opts.additional_headers or {}, verify_ssl = verify,
      timeout_s = opts.timeout_s or 60,
    quiet = opts.quiet or false, emulator = emulator,
  }, Fw)
  if emulator then
    fw.account_id = emulator:account_id()
  elseif opts.account_id then
    fw.account_id = opts.account_id
  else
    -- A `flare serve` reached by URL says so on the account lookup: deltas then use its format.
    fw.account_id, fw.delta_format = resolve_account(fw)
    if fw.delta_format and not opts.backend then fw.backend = "emulator" end
  end
  local polls = {}
  for k, v in pairs(POLL_INTERVALS[fw.backend]) do polls[k] = v end
  for k, v in pairs(opts.poll_intervals or {}) do
    if not polls[k] or type(v) ~= "number" or v < 0 then
      options.raise("invalid_argument", "flare.connect: poll_intervals." .. tostring(k) ..
        " must be a number >= 0 (kinds: deployment, deletion, hotload, trainer, warmup)")
    end
    polls[k] = v
  end
  fw.poll_intervals = polls
  fw.deployments = require("flare.fireworks.deployments").new(fw)
  fw.engines = require("flare.fireworks.engines").new(fw)
  return fw
end

return connect
