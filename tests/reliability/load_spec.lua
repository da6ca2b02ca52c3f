-- Load: 1000 sampling requests in flight at once from one script against the in-process
-- emulator, twice over. Every request is answered (the sampler retries what the
-- server turns away), no file descriptor is left behind once the emulator is stopped and
-- the client has seen its connections close, and the process's peak RSS is printed
-- (README, Reliability). No timing is asserted.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local stats = require("process_stats")
local emulator = require("flare.emulator")
local fs = require("flare.fs")

local BASE_MODEL = "accounts/local/models/tiny-gpt"
local PROMPTS, N, ROUNDS = 100, 10, 2  -- 100 prompts x n = 10: 1000 requests a round

local function scratch(name)
  return "/tmp/flare-load-" .. name .. "-" .. fs.getpid() .. "-" .. math.floor(flare.clock() * 1e6)
end

-- A second emulator that lives through the whole test (see stats.settle_client).
local probe_state = scratch("probe")
local probe = emulator.start{state_dir = probe_state}

-- Runs fn(fw) against a fresh in-process emulator, then stops it and lets the client see its
-- connections close, so that what is open afterwards is what the run left behind.
local function with_emulator(fn)
  local state = scratch("state")
  local em = emulator.start{state_dir = state, provision_delay_s = 0.05}
  local fw = flare.connect{backend = "emulator", base_url = em:base_url(), api_key = em:api_key(),
    account_id = em:account_id(), quiet = true}
  local ok, err = pcall(fn, fw)
  em:stop()
  collectgarbage()
  collectgarbage()
  stats.settle_client(probe)
  fs.remove(state, {recursive = true})
  if not ok then error(err, 0) end
end

local function ready(fw, id)
  fw.deployments:create_or_get{deployment_id = id, base_model = BASE_MODEL,
    min_replica_count = 1, max_replica_count = 1}
  return fw.deployments:wait_for_ready(id, {poll_interval_s = 0.05, timeout_s = 60})
end

describe("1000 concurrent sampling requests", function()
  after_each(function()
    probe:stop()
    fs.remove(probe_state, {recursive = true})
  end)

  it("are all answered, leak no descriptor and keep memory bounded", function()
    -- The baseline: the same steps with one request, so that libraries, the emulator's
    -- module and the client are loaded before the count.
    with_emulator(function(fw)
      local s = fw:sampler{deployment = ready(fw, "load-warm")}
      assert.equal(1, #s:sample{prompts = {"warm"}, n = 1, max_tokens = 4}[1])
    end)
    local fds_before = stats.fd_count()
    local mem_before = stats.memory()

    local answered, retries, total_s, peak_fds = 0, 0, 0, 0
    with_emulator(function(fw)
      local s = fw:sampler{deployment = ready(fw, "load"), concurrency = PROMPTS * N,
        -- A server may turn connections away past a per-client cap (503 + Retry-After): those
        -- requests are retried until they are answered.
        backoff_initial_s = 0.05, backoff_max_s = 0.5, max_attempts = 30, on_error = "return"}
      local prompts = {}
      for i = 1, PROMPTS do prompts[i] = string.format("prompt %03d", i) end
      for round = 1, ROUNDS do
        local t0 = flare.clock()
        local f = s:submit{prompts = prompts, n = N, max_tokens = 8, seed = round}
        -- While the round is in flight: the descriptors it holds (sockets on both ends).
        flare.sleep(0.05)
        peak_fds = math.max(peak_fds, stats.fd_count())
        local groups = f:wait()
        total_s = total_s + (flare.clock() - t0)
        assert.equal(PROMPTS, #groups)
        for i, g in ipairs(groups) do
          assert.equal(N, #g, "prompt " .. i .. " of round " .. round)
          for j, c in ipairs(g) do
            if c.error then
              error(string.format("round %d prompt %d sample %d failed: %s", round, i, j,
                tostring(c.error.message)))
            end
            assert.equal("string", type(c.finish_reason))
            answered = answered + 1
          end
        end
        local st = s:stats()
        assert.equal(0, st.in_flight)
        retries = st.retries
      end
    end)
    local fds_after = stats.fd_count()
    local mem_after = stats.memory()
    print(string.format("load: %d of %d requests answered (%d retries) in %.2f s, %.0f req/s; " ..
      "descriptors %d before, %d at most in flight, %d after; RSS %.1f MB before, %.1f MB " ..
      "after, peak %.1f MB (%.1f MB before the load)", answered, PROMPTS * N * ROUNDS, retries,
      total_s, answered / total_s, fds_before, peak_fds, fds_after, mem_before.rss_mb,
      mem_after.rss_mb, mem_after.hwm_mb, mem_before.hwm_mb))
    assert.equal(PROMPTS * N * ROUNDS, answered)
    if fds_after ~= fds_before then
      error(string.format("%d descriptors before the load, %d after:\n%s", fds_before, fds_after,
        table.concat(stats.fd_targets(), "\n")))
    end
    -- Bounded: 2000 requests fit in far less than a GiB (a leak of each answer would not).
    assert.truthy(mem_after.hwm_mb < 1024, string.format("peak RSS %.0f MB", mem_after.hwm_mb))
  end)
end)
