-- Writes a run directory shaped like flare.recipe's into an existing directory:
--   flare tests/repl/make_run_fixture.lua DIR [STEPS]
-- reward_mean rises from about 0.1 to about 0.8 with a deterministic wiggle.
local dir, steps = arg[1], tonumber(arg[2] or "40")
assert(dir, "usage: make_run_fixture.lua DIR [STEPS]")
local json = require("flare.json")

local function write(path, text)
  local f = assert(io.open(dir .. "/" .. path, "wb"))
  f:write(text)
  f:close()
end

write("config.json", json.encode({
  name = "grpo-fixture", seed = 7, flare_version = flare.version,
    created_at = "2026-01-01T12:00:00Z",
  script_sha256 = string.rep("ab", 32),
  config = { steps = steps, learning_rate = 1e-3, task = "vowels", group_size = 8 },
}, { pretty = true, sort_keys = true }) .. "\n")

local lines, checkpoints = {}, {}
local t0 = 1767268800
for step = 1, steps do
  local progress = (step - 1) / math.max(1, steps - 1)
  lines[#lines + 1] = json.encode({
    step = step, time = t0 + step * 2.5,
    reward_mean = 0.1 + 0.7 * progress + 0.03 * math.sin(step * 1.7),
    kl = 0.002 * step, truncation_rate = 0.3 * (1 - progress), sync_s = 0.4 + 0.05 * (step % 3),
    note = "text is not a metric",
  }, { sort_keys = true })
  if step % 10 == 0 then
    checkpoints[#checkpoints + 1] = json.encode({ step = step, time = t0 + step * 2.5,
      snapshot = "step-" .. step })
  end
end
write("metrics.jsonl", table.concat(lines, "\n") .. "\n")
write("checkpoints.jsonl", table.concat(checkpoints, "\n") .. "\n")
