-- Failing requests whose errors a user sees, for secrets_test.sh: every error is printed whole
-- (message, and the JSON of the error table with its context). Reaches the server through
-- FIREWORKS_BASE_URL and FIREWORKS_API_KEY; the wrong key comes as the first argument.
local json = require("flare.json")
local wrong_key = assert(arg[1], "usage: secrets_failures.lua WRONG_KEY")

local function show(what, fn)
  local ok, err = pcall(fn)
  if ok then print(what .. ": no error") return end
  print(what .. ": " .. tostring(type(err) == "table" and err.message or err))
  if type(err) == "table" then
    local ok_json, text = pcall(json.encode, err)
    print("  " .. (ok_json and text or ("(not JSON) " .. tostring(text))))
  end
end

local fw = flare.connect{quiet = true}
print("connection: " .. tostring(fw))
print("deployments: " .. tostring(fw.deployments))
show("wrong key", function()
  flare.connect{api_key = wrong_key, base_url = fw.base_url, quiet = true}
end)
show("wrong key, raw request", function()
  local bad = flare.connect{api_key = wrong_key, base_url = fw.base_url, account_id = "local",
    quiet = true}
  bad:request{path = "/v1/accounts/local/deployments", retries = 1}
end)
show("unknown deployment get", function()
  assert(fw.deployments:get("no-such-deployment") == nil, "found a deployment that is not there")
  error("get of an unknown deployment returned nil, as it should")
end)
show("unknown deployment hotload", function()
  fw.deployments:hotload_and_wait{deployment_id = "no-such-deployment",
    base_model = "accounts/local/models/tiny-gpt", snapshot_identity = "nope", timeout_seconds = 5}
end)
show("unknown deployment sample", function()
  local s = fw:sampler{model = "accounts/local/deployments/no-such-deployment", max_attempts = 1,
    not_ready_interval_s = 0.05, hotload_retry_interval = 0.05, hotload_max_retries = 1}
  s:sample{prompts = {"x"}, n = 1, max_tokens = 2}
end)
show("unknown route", function() fw:request{path = "/v1/no/such/route", retries = 1} end)
-- Server errors: every kind of injected fault on the account lookup, retried once.
for _, kind in ipairs{"500", "503", "429", "reset", "truncate"} do
  fw:set_faults("/v1/accounts:" .. kind .. ":rate=1")
  show("server fault " .. kind, function()
    fw:request{path = "/v1/accounts?pageSize=2", retries = 1, backoff_s = 0.01, timeout_s = 5}
  end)
end
fw:set_faults("")
-- An error nobody catches: flare run prints it and exits 1.
fw:request{path = "/v1/accounts/local/deployments/no-such-deployment", retries = 1}
