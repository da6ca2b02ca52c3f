-- A realistic Lua workload of a flare recipe, run on flare's own pure-Lua modules:
-- seeded problems (flare.tasks), completions scored by the task verifiers
-- (string patterns, flare.verify), GRPO advantages and trainer datums
-- (flare.grpo: tables, pairs/ipairs, closures). Seconds, best of 3.
-- usage: luajit grpo_workload.lua STDLIB_DIR [STEPS]
local stdlib, steps = arg[1], tonumber(arg[2]) or 3000
package.path = stdlib .. "/?.lua;" .. package.path
local tasks = require("flare.tasks")
local grpo = require("flare.grpo")

local function one_run()
  local t0 = os.clock()
  local kept = 0
  for step = 1, steps do
    local task = tasks.get(tasks.names[step % #tasks.names + 1], {seed = step})
    local problems = task:sample(8)
    local groups, rewards = {}, {}
    for g, p in ipairs(problems) do
      local group, rs = {}, {}
      for i = 1, 8 do
        -- Half the samples answer correctly, the others answer with noise.
        local text = i % 2 == 0 and tostring(p.answer) or (p.prompt:sub(1, 3) .. i)
        local tokens, logprobs, prompt_tokens = {}, {}, {}
        for k = 1, #text do tokens[k], logprobs[k] = text:byte(k), -0.01 * k end
        for k = 1, #p.prompt do prompt_tokens[k] = p.prompt:byte(k) end
        group[i] = {text = text, tokens = tokens, logprobs = logprobs,
          prompt_tokens = prompt_tokens}
        rs[i] = task:reward(p, text)
      end
      groups[g], rewards[g] = group, rs
    end
    local datums = grpo.build_datums(groups, rewards, {normalize_std = true})
    kept = kept + #datums
  end
  return os.clock() - t0, kept
end

local best, kept = math.huge, 0
for _ = 1, 3 do
  local t, k = one_run()
  best, kept = math.min(best, t), k
end
assert(kept > 0, "no datums built")
print(string.format("%.4f", best))
