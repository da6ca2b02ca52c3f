-- flare.connect: defaults, environment, account lookup, redaction of the key.
local fx = require("client_fixture")

local function err_text(fn)
  local ok, e = pcall(fn)
  assert.falsy(ok, "expected an error")
  return tostring(e), e
end

describe("flare.connect", function()
  it("starts the in-process emulator when there is no key and no URL", function()
    local fw = fx.fw()
    assert.equal("emulator", fw.backend)
    assert.equal("local", fw.account_id)
    assert.matches("^http://127%.0%.0%.1:%d+$", fw.base_url)
    assert.equal(fw.base_url, fw.inference_url)
    assert.equal(fw.base_url, fw.hotload_api_url)
    assert.equal(false, fw.verify_ssl)
    assert.truthy(fw.emulator)
    assert.equal(fw.emulator:api_key(), fw.api_key)
    -- A second connect in the same state reuses the one emulator.
    local again = flare.connect{backend = "emulator", quiet = true}
    assert.equal(fw.base_url, again.base_url)
  end)

  it("resolves the account from the key and strips trailing slashes", function()
    local em = fx.fw().emulator
    local fw = flare.connect{api_key = em:api_key(), base_url = em:base_url() .. "///",
      quiet = true}
    assert.equal("local", fw.account_id)
    assert.equal(em:base_url(), fw.base_url)
    assert.same({}, fw.deployments:list() and {} or nil)
  end)

  it("knows an emulator reached by URL from its account lookup, unless told the backend", function()
    local em = fx.fw().emulator
    local fw = flare.connect{api_key = em:api_key(), base_url = em:base_url(), quiet = true}
    assert.equal("emulator", fw.backend)
    assert.equal("flare-delta-v1", fw.delta_format)
    local sy = flare.weight_syncer{policy_client = {}, deploy_mgr = fw.deployments,
      deployment_id = "x",
      base_model = fx.BASE_MODEL}
    assert.equal("flare-delta-v1", sy.compression_format)
    local forced = flare.connect{api_key = em:api_key(), base_url = em:base_url(),
      backend = "cloud", quiet = true}
    assert.equal("cloud", forced.backend)
    assert.is_nil(flare.connect{api_key = em:api_key(), base_url = em:base_url(),
      account_id = "local",
      quiet = true}.delta_format, "no lookup, no format")
  end)

  it("never shows the key: tostring, errors of a wrong key", function()
    local em = fx.fw().emulator
    local fw = flare.connect{api_key = em:api_key(), base_url = em:base_url(), backend = "emulator",
      quiet = true}
    local s = tostring(fw)
    assert.falsy(s:find(em:api_key(), 1, true), "tostring shows the key")
    assert.truthy(s:find("…", 1, true) or s:find("<redacted>", 1, true))
    local text, e = err_text(function()
      flare.connect{api_key = fx.KEY, base_url = em:base_url(), quiet = true}
    end)
    assert.equal("unauthenticated", e.code)
    assert.equal(401, e.status)
    assert.falsy(text:find(fx.KEY, 1, true), "error shows the key: " .. text)
    assert.falsy(tostring(e.message):find(fx.KEY, 1, true))
    assert.truthy(text:find("API key", 1, true))
  end)

  it("redacts keys in the short and the long form", function()
    local fwn = require("flare.fireworks")
    assert.equal("fw_\xE2\x80\xA6cdef", fwn.redact_key(fx.KEY))
    assert.equal("<redacted>", fwn.redact_key("short"))
    local fw = fx.fw()
    assert.equal("x " .. fwn.redact_key(fw.api_key) .. " y",
      fw:_native():redact("x " .. fw.api_key .. " y"))
  end)

  it("takes URLs and the key from the environment", function()
    local em = fx.fw().emulator
    local exe = fx.flare_exe()
    local script = "local fw = flare.connect{quiet = true} " ..
      "print(fw.backend, fw.account_id, fw.inference_url, fw.hotload_api_url)"
    local cmd = string.format("FIREWORKS_API_KEY=%s FIREWORKS_BASE_URL=%s " ..
      "FIREWORKS_INFERENCE_URL=%s FIREWORKS_HOTLOAD_URL=%s %s -e %s 2>&1", em:api_key(),
      em:base_url(), em:base_url() .. "/", em:base_url() .. "//", exe, fx.shell_quote(script))
    local p = io.popen(cmd)
    local out = p:read("*a")
    p:close()
    assert.equal("emulator\tlocal\t" .. em:base_url() .. "\t" .. em:base_url() .. "\n", out)
  end)

  it("applies the TLS verification rule", function()
    local fwn = require("flare.fireworks")
    assert.is_true(fwn.default_verify_ssl("https://api.fireworks.ai"))
    assert.is_false(fwn.default_verify_ssl("http://api.fireworks.ai"))
    assert.is_false(fwn.default_verify_ssl("https://10.0.0.1:8443"))
    assert.is_false(fwn.default_verify_ssl("https://[::1]:8443/x"))
    local em = fx.fw().emulator
    local fw = flare.connect{api_key = em:api_key(), base_url = em:base_url(), verify_ssl = true,
      quiet = true}
    assert.is_true(fw.verify_ssl)
  end)

  it("rejects bad options before any request", function()
    assert.error_matches(function() flare.connect{base_ur = "http://x"} end,
      "did you mean 'base_url'")
    assert.error_matches(function() flare.connect{timeout_s = "10"} end, "timeout_s.*number")
    assert.error_matches(function() flare.connect{backend = "gpu"} end, "backend must be")
    assert.error_matches(function() flare.connect{backend = "cloud", base_url = "ftp://x",
      api_key = "k"} end,
      "base_url must look like")
    assert.error_matches(function() flare.connect{backend = "cloud",
      base_url = "http://127.0.0.1:9"} end,
      "no API key")
  end)

  it("reports an unreachable server with what failed", function()
    local _, e = pcall(flare.connect, {api_key = fx.KEY, base_url = "http://127.0.0.1:9",
      quiet = true,
      connect_timeout_s = 2})
    assert.equal("connect_failed", e.code)
    assert.truthy(tostring(e):find("look up the account", 1, true))
    assert.falsy(tostring(e):find(fx.KEY, 1, true))
  end)
end)
