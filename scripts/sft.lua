-- Supervised fine-tuning on a JSONL (or CSV) data set: rows with `messages` are formatted
-- by flare's chat template (flare.chat, docs/chat_template.md), the same text the sampler's
-- prompts get; rows with `prompt` and `completion` are used as they are. A held-out split
-- gives the eval loss (a forward pass) and the accuracy of sampled answers: the task's
-- verifier when the row names a flare.tasks task, else an exact match of the reference.
--
--   build/flare run examples/data/generate.lua          # writes examples/data/*.jsonl
--   flare run scripts/sft.lua                            # vowels: accuracy ~0 -> ~1
--   flare run scripts/sft.lua --data=my.jsonl --steps=200 --batch-size=32
--   flare run scripts/sft.lua --resume                   # after its last checkpoint
local chat, data, distill = flare.chat, flare.data, flare.distill

local run = flare.recipe{name = "sft", main_metric = "accuracy", config = {
  data = "examples/data/vowels.jsonl", eval_rows = 64, seed = 0,
  steps = 40, batch_size = 16, learning_rate = 1e-2, eval_every = 10,
  accuracy_rows = 32, max_tokens = 12,
  deployment_id = "sft-tiny", base_model = "accounts/local/models/tiny-gpt",
  on_exit = "scale_to_zero",
}}
local c = run.config
local rows = data.load(c.data).rows  -- its sha256 goes into config.json
local train, held = data.split(rows, {eval = c.eval_rows, seed = c.seed})
if run:plan{
  string.format("%s: %d rows, %d train, %d held out", c.data, #rows, #train, #held),
  string.format("%d steps of %d rows, lr %g, evaluate every %d steps", c.steps, c.batch_size,
    c.learning_rate, c.eval_every),
  "deployment " .. c.deployment_id .. " (" .. c.base_model .. ") for the accuracy samples",
} then return end

-- {prompt =, completion =, row =}: the prompt ends where the model's answer begins.
local function example(row)
  if type(row.messages) == "table" then
    local ex = chat.split(row.messages)
    return {prompt = ex.prompt, completion = ex.completion, row = row, chat = true}
  end
  if type(row.prompt) ~= "string" or row.completion == nil then
    flare.error{code = "invalid_data", message = c.data ..
      ": each row needs `messages`, or `prompt` and `completion`"}
  end
  return {prompt = row.prompt, completion = tostring(row.completion), row = row}
end
local function samples(list)
  local out = {}
  for i, row in ipairs(list) do
    local ex = example(row)
    out[i] = distill.text_sample(ex.prompt, ex.completion)
  end
  return out
end
local eval_samples = samples(held)

local function correct(ex, text)
  for _, name in ipairs(flare.tasks.names) do
    if ex.row.task == name then return flare.tasks.get(name):verify(ex.row, text) end
  end
  local want = ex.chat and ex.row.messages[#ex.row.messages].content or ex.completion
  return (text:gsub("%s+$", "")) == (tostring(want):gsub("%s+$", ""))
end

flare.with_deployment({deployment_id = c.deployment_id, base_model = c.base_model,
    min_replica_count = 0, max_replica_count = 1}, function(info, fw)
  local trainer, syncer = run:trainer(fw, info, {base_model = c.base_model,
    learning_rate = c.learning_rate})
  if run.state then trainer:load_state(run.state.trainer_state) end
  local sampler = fw:sampler{deployment = info}

  -- Eval loss (per token) on every held-out row; accuracy of greedy answers on the first
  -- accuracy_rows of them.
  local function evaluate(step)
    local loss = flare.loops.eval_loss(trainer, eval_samples)
    syncer:save_and_hotload("eval-" .. step)
    local exs, prompts = {}, {}
    for i = 1, math.min(c.accuracy_rows, #held) do
      exs[i] = example(held[i])
      prompts[i] = exs[i].prompt
    end
    local groups = sampler:sample{prompts = prompts, n = 1, max_tokens = c.max_tokens,
      temperature = 0, stop = {chat.stop}, seed = c.seed}
    local right = 0
    for i, g in ipairs(groups) do
      if correct(exs[i], (g.completions or g)[1].text) then right = right + 1 end
    end
    return loss, right / math.max(1, #prompts)
  end

  local first_loss, first_acc = evaluate(run.start_step - 1)
  if not run.resumed then run:log{step = 0, eval_loss = first_loss, accuracy = first_acc} end
  local loss, acc = first_loss, first_acc
  local next_batch = data.batches(train, {batch_size = c.batch_size, epochs = math.huge,
    seed = c.seed})
  flare.loops.sft{trainer = trainer, steps = c.steps, start_step = run.start_step,
    learning_rate = c.learning_rate, log = function(m) run:log(m) end,
    batch = function(step)  -- the step-th batch: a resumed run skips those before it
      local batch, at
      repeat batch, at = next_batch() until at.step == step
      return samples(batch), {epoch = at.epoch}
    end,
    after_step = function(m)
      if m.step % c.eval_every == 0 or m.step == c.steps then
        loss, acc = evaluate(m.step)
        m.eval_loss, m.accuracy = loss, acc
        trainer:save_state("step-" .. m.step)
        run:checkpoint{step = m.step, state = {trainer_state = "step-" .. m.step}}
      end
    end}
  print(string.format("eval loss %.3f -> %.3f, held-out accuracy %.3f -> %.3f (%d rows)",
    first_loss, loss, first_acc, acc, math.min(c.accuracy_rows, #held)))
end, {fw = run:connect(), on_exit = c.on_exit})
