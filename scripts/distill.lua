-- Distillation by rejection sampling: a teacher deployment serving a trained
-- snapshot samples k answers per prompt, the verifier keeps the correct ones
-- (no truncated ones, no duplicates), and a student trainer is fine-tuned on
-- them. The student is evaluated before and after.
--
--   flare run scripts/distill.lua
--   flare run scripts/distill.lua --problems=64 --k=8 --want=2 --student-steps=40
--   flare run scripts/distill.lua --resume      # sampling resumes from the shards written so far
local distill = flare.distill

local run = flare.recipe{name = "distill", config = {
  task = "vowels", seed = 0, base_model = "accounts/local/models/tiny-gpt",
  teacher_id = "distill-teacher", student_id = "distill-student", on_exit = "scale_to_zero",
  -- the teacher learns from reference answers
  teacher_steps = 25, learning_rate = 1e-2, batch_size = 16,
  problems = 32, k = 8, batch = 4, want = 2, max_tokens = 8, temperature = 1.0,
  student_steps = 25, eval_problems = 16, eval_n = 4,
}}
local c = run.config
if run:plan{
  string.format("teacher %s: %d supervised steps on %s, then serve it", c.teacher_id,
    c.teacher_steps, c.task),
  string.format("sample up to %d per prompt for %d prompts, keep %d verified", c.k,
    c.problems, c.want),
  string.format("student %s: evaluate, %d steps on the kept samples, evaluate", c.student_id,
    c.student_steps),
} then return end

local task = flare.tasks.get(c.task)
local fw = run:connect()

local function deployment(id) return {deployment_id = id, base_model = c.base_model,
  max_replica_count = 1} end

-- A trainer linked to a deployment, closed at exit, with a syncer onto that deployment.
local function trainer_for(info, name)
  return run:trainer(fw, info, {name = name, what = name .. " trainer",
    base_model = c.base_model, learning_rate = c.learning_rate})
end

local function sft(trainer, samples, steps, from)
  flare.loops.sft{trainer = trainer, batch = samples, steps = steps,
    learning_rate = c.learning_rate,
    log = function(m) run:log{phase = from, step = m.step, loss = m.loss} end}
end

local accepted
flare.with_deployment(deployment(c.teacher_id), function(info)
  local teacher, syncer = trainer_for(info, "teacher")
  sft(teacher, function(step)
    local out = {}
    for i, p in ipairs(flare.tasks.get(c.task, {seed =
      c.seed * 1000 + step}):sample(c.batch_size)) do
      out[i] = distill.text_sample(p.prompt, tostring(p.answer))
    end
    return out
  end, c.teacher_steps, "teacher")
  syncer:save_and_hotload("teacher")
  local result = distill.rejection_sample{sampler = fw:sampler{deployment = info},
    problems = flare.tasks.get(c.task, {seed = c.seed + 777}):sample(c.problems),
    verify = function(p, text) return task:verify(p, text) end,
    k = c.k, batch = c.batch, want = c.want, max_tokens = c.max_tokens, temperature = c.temperature,
    seed = c.seed * 100003 + 1, out_dir = run.dir .. "/samples"}
  for _, line in ipairs(distill.format_stats(result.stats)) do print(line) end
  run:log{phase = "filter", accepted = result.stats.accepted, samples = result.stats.samples,
    acceptance_rate = result.stats.acceptance_rate}
  accepted = result.samples
end, {fw = fw, on_exit = c.on_exit})

if #accepted == 0 then flare.error{code = "no_samples",
  message = "the teacher produced no verified sample"} end

flare.with_deployment(deployment(c.student_id), function(info)
  local student, syncer = trainer_for(info, "student")
  local sampler = fw:sampler{deployment = info}
  local eval_set = flare.tasks.get(c.task, {seed = c.seed + 999}):sample(c.eval_problems)
  local function evaluate(when)
    local r = flare.tasks.evaluate(sampler, task, eval_set,
      {n = c.eval_n, max_tokens = c.max_tokens, seed = c.seed * 100003 + 2})
    run:log{phase = "eval", when = when, correct_rate = r.correct_rate, reward_mean = r.reward_mean}
    return r
  end
  syncer:save_and_hotload("student-before")
  local before = evaluate("before")
  sft(student, function() return accepted end, c.student_steps, "student")
  syncer:save_and_hotload("student-after")
  local after = evaluate("after")
  print(string.format("student correct rate %.3f -> %.3f on %d held-out prompts",
    before.correct_rate,
    after.correct_rate, #eval_set))
end, {fw = fw, on_exit = c.on_exit})
