-- flare.loops against the emulator: the SFT step's loss per completion token, the SFT loop's
-- steps, rows and hooks, the GRPO loop's hooks (async sampling, hotload, log info), samplers
-- with a seed per prompt.
local fx = require("client_fixture")
local loops, distill = flare.loops, flare.distill

describe("flare.loops", function()
  local fw, info, trainer
  before_each(function()
    fw = fx.fw()
    if not trainer then
      info = fx.ready_deployment("loops")
      trainer = fw:trainer{base_model = fx.BASE_MODEL, hot_load_deployment_id = info.deployment_id,
        poll_interval_s = 0.05}
    end
  end)

  local samples = {distill.text_sample("ab", "cde"), distill.text_sample("xyz", "w")}

  it("sft_step's loss is the loss per completion token before the step", function()
    local before = loops.eval_loss(trainer, samples)
    local raw = trainer:forward(distill.sft_datums(samples), "cross_entropy").metrics.loss
    assert.near(raw / 6, before, 1e-6)  -- "cde" + eos, "w" + eos: 6 weighted tokens
    local m = loops.sft_step(trainer, samples, 1e-2)
    assert.near(before, m.loss, 1e-4)
    assert.truthy(m.grad_norm > 0)
    assert.truthy(loops.eval_loss(trainer, samples) < before)
  end)

  it("sft runs start_step..steps with the batch's row, after_step before the log", function()
    local rows, seen = {}, {}
    loops.sft{trainer = trainer, steps = 4, start_step = 3, learning_rate = 1e-2,
      eval = samples,
      batch = function(step)
        seen[#seen + 1] = step
        return samples, {epoch = 7}
      end,
      after_step = function(row) row.extra = row.step * 10 end,
      log = function(row) rows[#rows + 1] = row end}
    assert.same({3, 4}, seen)
    assert.equal(3, #rows)
    assert.equal(0, rows[1].step)
    assert.truthy(rows[1].eval_loss > 0 and rows[1].loss == nil)
    assert.equal(3, rows[2].step)
    assert.equal(7, rows[2].epoch)
    assert.equal(30, rows[2].extra)
    assert.truthy(rows[2].loss > 0 and rows[2].eval_loss == nil)
    assert.truthy(rows[3].eval_loss < rows[1].eval_loss)
  end)

  it("per_prompt_seeds gives each prompt of a seeded request its own samples", function()
    local sampler = fw:sampler{deployment = info}
    local function texts(groups)
      local out = {}
      for i, g in ipairs(groups) do
        out[i] = {}
        for j, c in ipairs(g) do out[i][j] = c.text end
      end
      return out
    end
    local req = {prompts = {"ab", "ab", "cd"}, n = 3, max_tokens = 8, temperature = 1.0,
      seed = 11}
    local shared = texts(sampler:sample(req))
    assert.same(shared[1], shared[2])  -- the same prompt with the same seeds: the same samples
    local own = loops.per_prompt_seeds(sampler)
    local apart = texts(own:sample(req))
    assert.equal(3, #apart)
    assert.equal(3, #apart[3])
    assert.truthy(table.concat(apart[1], "|") ~= table.concat(apart[2], "|"),
      table.concat(apart[1], "|"))
    assert.same(apart, texts(own:submit(req):wait()))  -- still a function of the seed
    -- a sampler with only a sample method: the same samples, asked one prompt at a time
    local sample_only = {sample = function(_, p) return sampler:sample(p) end}
    assert.same(apart, texts(flare.tasks.per_prompt_seeds(sample_only):sample(req)))
    local one = texts(own:sample{prompts = {"ab"}, n = 3, max_tokens = 8, seed = 11})
    assert.same(shared[1], one[1])  -- a single prompt keeps the request's seed
  end)

  it("grpo samples ahead when async, calls hotload every step and logs the step's info",
    function()
    local syncer = flare.weight_syncer{policy_client = trainer, deploy_mgr = fw.deployments,
      deployment_id = info.deployment_id, base_model = fx.BASE_MODEL, quiet = true,
      poll_interval_s = 0.05, warmup_retry_interval_s = 0.05}
    local events, rows, infos = {}, {}, {}
    local task = flare.tasks.get("vowels")
    local curve = loops.grpo{trainer = trainer, syncer = syncer, task = task,
      sampler = fw:sampler{deployment = info}, steps = 3, start_step = 2, group_size = 4,
      max_tokens = 4, learning_rate = 1e-2, async = true,
      problems = function(step)
        events[#events + 1] = "problems " .. step
        return flare.tasks.get("vowels", {seed = step}):sample(2)
      end,
      hotload = function(step, trained)
        events[#events + 1] = "hotload " .. step
        if trained then syncer:save_and_hotload("loops-" .. step) end
      end,
      log = function(row, s)
        rows[#rows + 1] = row
        infos[#infos + 1] = s
      end}
    -- Step 3's batch was asked for before step 2's update, and once.
    assert.same({"problems 2", "problems 3", "hotload 2", "hotload 3"}, events)
    assert.same({2, 3}, {rows[1].step, rows[2].step})
    assert.equal(2, #curve)
    assert.equal(curve[1], rows[1].reward)
    assert.equal(curve[1], infos[1].metrics.reward_mean)
    assert.equal(rows[2].loss, infos[2].out.metrics.loss)
  end)
end)
