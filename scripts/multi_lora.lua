-- Three LoRA adapters, one engine: each adapter is trained (SFT) on its own task, all three are
-- deployed on one engine (a deployment with enable_addons) beside its base model, each is
-- evaluated on every task, then one is undeployed and the engine deactivated and reactivated.
--
--   flare run scripts/multi_lora.lua              # vowels, sort, one-digit addition on tiny-gpt
--   flare run scripts/multi_lora.lua --tasks=vowels,reverse,sort --steps=1000
-- Prints the table, then "claims: ok" when each adapter beats the base and the other adapters
-- on its own task (exit 1 otherwise; --check-claims=false only reports). The base is random.
local run = flare.recipe{name = "multi_lora", config = {
  tasks = "vowels,sort,addition", digits = 1, steps = 600, batch = 8, learning_rate = 1e-3,
  lora_rank = 8, eval_problems = 16, max_tokens = 8, seed = 0, check_claims = true,
  engine_id = "multi-lora", base_model = "accounts/local/models/tiny-gpt",
}}
local c = run.config
local tasks = {}
for name in c.tasks:gmatch("[^,]+") do tasks[#tasks + 1] = name end
local function task(name, seed)  -- `digits` sizes addition's operands (one digit: sums to 18)
  return flare.tasks.get(name, {seed = seed, digits = name == "addition" and c.digits or nil})
end
if run:plan{
  string.format("train %d LoRA adapters (rank %d, %d SFT steps of %d) on %s", #tasks, c.lora_rank,
    c.steps, c.batch, table.concat(tasks, ", ")),
  "deploy them on engine " .. c.engine_id .. " (" .. c.base_model .. "), evaluate, undeploy one,",
  "deactivate and reactivate the engine; everything is deleted on exit",
} then return end

local fw = run:connect()

-- Cleanup runs last-registered first: the engine (with its deployments), then the models.
local models = {}
flare.defer(function()
  for _, m in ipairs(models) do fw.engines:delete_model(m) end
end, "delete the LoRA models")
local engine = fw.engines:create({deployment_id = c.engine_id, base_model = c.base_model,
  min_replica_count = 1, inactive_timeout_s = 3600})
flare.defer(function() fw.engines:delete(engine) end, "delete engine " .. c.engine_id)

local addons = {}
for i, name in ipairs(tasks) do
  local trainer = fw:trainer{base_model = c.base_model, lora_rank = c.lora_rank,
    learning_rate = c.learning_rate}
  flare.defer(function() trainer:close() end, "close trainer " .. name)
  -- prompt .. answer .. "\n" as bytes; the loss weighs the answer's tokens only.
  flare.loops.sft{trainer = trainer, steps = c.steps, learning_rate = c.learning_rate,
    batch = function(step)
      local batch = {}
      for k, p in ipairs(task(name, c.seed * 7919 + step):sample(c.batch)) do
        batch[k] = flare.distill.text_sample(p.prompt, tostring(p.answer), 10)
      end
      return batch
    end}
  trainer:save_weights_for_sampler(name .. "-final")
  local addon = string.format("%s-%s-%d", c.engine_id, name, i)
  addons[i] = fw.engines:deploy{engine = engine, name = addon,
    source = {trainer = trainer, snapshot = name .. "-final"}}
  models[#models + 1] = addon
  print(string.format("adapter %-24s trained on %-8s %s", addon, name, addons[i].status))
end

-- Mean reward of greedy answers on held-out problems of every task.
local function scores(sampler)
  local out = {}
  for t, name in ipairs(tasks) do
    local held_out = task(name, 1000003 + c.seed)
    out[t] = flare.tasks.evaluate(sampler, held_out, held_out:sample(c.eval_problems),
      {n = 1, max_tokens = c.max_tokens, temperature = 0}).reward_mean
  end
  return out
end

local rows = {{"base model", scores(fw:sampler{deployment = engine})}}
for i, d in ipairs(addons) do
  rows[#rows + 1] = {tasks[i] .. " adapter", scores(fw:sampler{deployment = engine,
    model = d.model:match("[^/]+$")})}
end
io.write(string.format("%-18s", "reward"))
for _, name in ipairs(tasks) do io.write(string.format("%10s", name)) end
io.write("\n")
for _, row in ipairs(rows) do
  io.write(string.format("%-18s", row[1]))
  for t = 1, #tasks do io.write(string.format("%10.3f", row[2][t])) end
  io.write("\n")
end
local ok = true
for i = 1, #tasks do
  for r = 1, #rows do
    if r ~= i + 1 and rows[r][2][i] >= rows[i + 1][2][i] then
      ok = false
      print(string.format("claim fails: on %s, %s (%.3f) >= %s (%.3f)", tasks[i], rows[r][1],
        rows[r][2][i], rows[i + 1][1], rows[i + 1][2][i]))
    end
  end
end

local function show(title)
  print(title)
  for _, d in ipairs(fw.engines:list(engine)) do
    print(string.format("  %-28s %-12s %-26s %s", d.display_name or d.id, d.status, d.source,
      d.created))
  end
end
fw.engines:undeploy(addons[1])
show("after undeploying " .. addons[1].id .. ":")
fw.engines:deactivate(engine)
show("engine deactivated:")
fw.engines:reactivate(engine)
show("engine reactivating:")
fw.engines:wait_for(engine, "Deployed")
show("engine back:")
print("claims: " .. (ok and "ok" or "FAILED"))
if not ok and c.check_claims then flare.error{code = "claims", message = "see the table"} end
