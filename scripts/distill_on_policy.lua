-- On-policy distillation against rejection-sampling SFT (scripts/distill.lua's method) with
-- one teacher. On-policy: the student samples, the teacher's trainer scores its tokens (a
-- forward pass), and the student minimises the per-token reverse KL: importance sampling with
-- advantage teacher_lp - student_lp per token (as Tinker's cookbook). Both students start
-- from one checkpoint (--warm-steps of SFT on kept samples) and report the step at which
-- their correct rate reaches the teacher's (x --target).   flare run
-- scripts/distill_on_policy.lua [--seed=1] [--target=0.9] [--resume: skips the phases done]
local distill = flare.distill

local run = flare.recipe{name = "distill_on_policy", main_metric = "correct_rate", config = {
  task = "vowels", seed = 0, base_model = "accounts/local/models/tiny-gpt",
  teacher_steps = 40, learning_rate = 1e-2, batch_size = 32, warm_steps = 6, steps = 30,
  student_learning_rate = 1.5e-2,                 -- both students' steps after the warm-up
  -- one step of either student holds 32 sequences: prompts_per_step x group_size = batch_size
  answer_length = 8,           -- vowels: the teacher's answers (4 letters: fewer tokens to teach)
  prompts_per_step = 16, group_size = 2, max_tokens = 12, eval_every = 1, eval_problems = 64,
  eval_n = 8, target = 0.95,                      -- reach target x the teacher's correct rate
  problems = 64, k = 8, want = 2,                 -- the rejection-sampling data set
  on_exit = "scale_to_zero",
}}
local c = run.config
if run:plan{string.format("teacher: %d SFT steps on %s; students: %d warm-up SFT steps, " ..
  "then <= %d steps of on-policy distillation (%d prompts x %d samples) or rejection-sampling" ..
  " SFT (%d kept samples)", c.teacher_steps, c.task, c.warm_steps, c.steps, c.prompts_per_step,
  c.group_size, c.batch_size)} then return end

local function task_of(seed)
  local length = c.task == "vowels" and c.answer_length or nil
  return flare.tasks.get(c.task, {seed = seed, length = length})
end
local task, fw, done = task_of(0), run:connect(), run.state or {}
local function problems(seed, n) return task_of(seed):sample(n) end
local eval_set = problems(c.seed + 999, c.eval_problems)
local function correct_rate(sampler, seed)
  return flare.tasks.evaluate(sampler, task, eval_set, {n = c.eval_n, max_tokens = c.max_tokens,
    seed = seed}).correct_rate
end
local function with_model(id, fn)  -- a deployment, its trainer, syncer and sampler
  return flare.with_deployment({deployment_id = "odist-" .. id, base_model = c.base_model,
    max_replica_count = 1}, function(info)
    local t, syncer = run:trainer(fw, info, {name = "odist-" .. id, what = id .. " trainer",
      base_model = c.base_model, learning_rate = c.learning_rate})
    return fn(t, syncer, fw:sampler{deployment = info})
  end, {fw = fw, on_exit = c.on_exit})
end
local teacher, kept
local function kept_batch(step)  -- the kept samples in turn, batch_size at a time
  local b, n, k = {}, #kept.samples, (step - 1) * c.batch_size
  for i = 1, c.batch_size do b[i] = kept.samples[(k + i - 1) % n + 1] end
  return b
end

with_model("teacher", function(t, syncer, sampler)
  teacher = t
  if done.teacher then t:load_state("teacher") else
    flare.loops.sft{trainer = t, steps = c.teacher_steps, learning_rate = c.learning_rate,
      batch = function(step)
        local batch = {}
        for i, p in ipairs(problems(c.seed * 1000 + step, c.batch_size)) do
          batch[i] = distill.text_sample(p.prompt, tostring(p.answer))
        end
        return batch
      end}
    t:save_state("teacher")
  end
  syncer:save_and_hotload("teacher")
  done.teacher = done.teacher or correct_rate(sampler, 1)
  kept = distill.rejection_sample{sampler = sampler, problems = problems(c.seed + 777, c.problems),
    verify = function(p, text) return task:verify(p, text) end, k = c.k, want = c.want,
    max_tokens = c.max_tokens, seed = c.seed * 100003 + 1, out_dir = run.dir .. "/samples"}
  run:log{phase = "teacher", correct_rate = done.teacher, kept = kept.stats.accepted}
  run:checkpoint{step = 1, state = done}
end)
local goal = c.target * done.teacher
if #kept.samples == 0 then flare.error{code = "no_samples",
  message = "the teacher produced no verified sample: raise --teacher-steps or --k"} end
-- Trains a fresh student with step_fn until it reaches the goal: the step it did, or false.
local function student(name, step_fn)
  if done[name] ~= nil then return done[name] end
  return with_model(name, function(t, syncer, sampler)
    for w = 1, c.warm_steps do flare.loops.sft_step(t, kept_batch(1000 + w), c.learning_rate) end
    syncer:save_and_hotload(name .. "-0")
    local rate = correct_rate(sampler, 2)
    run:log{phase = name, step = 0, correct_rate = rate}
    local reached = rate >= goal and 0
    for step = 1, reached and 0 or c.steps do
      local m = step_fn(t, sampler, step)
      m.phase, m.step = name, step
      syncer:save_and_hotload(name .. "-" .. step)  -- the next samples are the student's own
      if step % c.eval_every == 0 or step == c.steps then
        m.correct_rate = correct_rate(sampler, 2)
      end
      run:log(m)
      if (m.correct_rate or 0) >= goal then reached = step break end
    end
    done[name] = reached
    run:checkpoint{step = name == "on-policy" and 2 or 3, state = done}
    return reached
  end)
end

local on_policy = student("on-policy", function(t, sampler, step)
  local prompts, seed = {}, c.seed * 100003 + step
  for i, p in ipairs(problems(seed, c.prompts_per_step)) do prompts[i] = p.prompt end
  local groups = flare.tasks.per_prompt_seeds(sampler):sample{prompts = prompts,
    n = c.group_size, logprobs = true, max_tokens = c.max_tokens, temperature = 1.0,
    seed = seed * 64}
  local datums, info = distill.reverse_kl_datums(groups, teacher)
  t:forward_backward(datums, "importance_sampling")
  t:optim_step{learning_rate = c.student_learning_rate}
  return {reverse_kl = info.reverse_kl}  -- per sampled token, before the step
end)
local rejection = student("rejection-sft", function(t, _, s)
  return {loss = flare.loops.sft_step(t, kept_batch(s), c.student_learning_rate).loss} end)
local function show(s) return s and ("step " .. s) or ("no step of " .. c.steps) end
print(string.format("teacher correct rate %.3f; goal %.3f\non-policy distillation reached it " ..
  "at %s\nrejection-sampling SFT reached it at %s", done.teacher, goal, show(on_policy),
  show(rejection)))
