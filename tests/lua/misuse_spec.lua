-- Every public flare.* function, called wrongly, raises the one structured misuse error:
-- {code = "invalid_argument", message = "<flare.module.function>: <the argument or option> ..."}.
-- The functions are found at run time (the flare table, its C modules and every stdlib module), so
-- a new function is walked without being listed here.
local fs = require("flare.fs")

-- No flare function takes a coroutine, so it is the wrong type for every first argument.
local WRONG = coroutine.create(function() end)

-- Functions that take no argument (nothing to misuse), with the reason.
local takes_no_argument = {
  ["flare.clock"] = "monotonic seconds, no argument",
  ["flare.time"] = "wall-clock seconds, no argument",
  ["flare.fs.getpid"] = "the process id, no argument",
  ["flare.fs.cwd"] = "the current directory, no argument",
  ["flare.repl.c_modules"] = "the list of C modules, no argument",
  ["flare.cleanup.pending"] = "a count, no argument",
  ["flare.sqlite.version"] = "the SQLite library's version, no argument",
  ["flare.release.default_registry"] = "the registry path, no argument",
  ["flare.sandbox_native.landlock_abi"] = "the kernel's Landlock ABI version, no argument",
  ["flare.sandbox_native.process_config"] = "what flare run --sandbox granted, no argument",
  ["flare.sandbox_native.stdlib_dir"] = "the stdlib's folder, no argument",
  ["flare.modules.record"] = "the loaded modules, no argument",
  ["flare.modules.rock_trees"] = "the trees on package.path, no argument",
  ["flare.data.files_read"] = "the data files read so far, no argument",
  ["flare.json.parser"] = "the JSON parser in use, no argument",
  ["flare.recipe.current"] = "the script's flare.recipe run, no argument",
}

-- Functions that accept a value of any type as their first argument (so no type is wrong).
local takes_any_value = {
  ["flare.args.check"] = "checks a value of any type",
  ["flare.test.deep_equal"] = "compares values of any type",
  ["flare.test.error_text"] = "describes an error value of any type",
}

-- Functions that take an options table: how to call each with `o` (other arguments valid), a
-- misspelt option and the option it stands for, and who names the error when another function
-- reads the options.
local function tmp(name)
  return (os.getenv("TMPDIR") or "/tmp") .. "/flare-misuse-" .. fs.getpid() .. "-" .. name
end
local function with(fields, o)
  for k, v in pairs(fields) do o[k] = v end
  return o
end
local option_calls = {}
local function takes_options(name, near, meant, fn, who)
  option_calls[name] = {fn, near, meant, who = who}
end
local no_port = "http://127.0.0.1:9/"
takes_options("flare.error", "mesage", "message", function(o) flare.error(o) end)
takes_options("flare.args.options", "prety", "pretty",
  function(o) return flare.args.options(o, {pretty = "boolean"}, "flare.args.options") end)
takes_options("flare.json.encode", "sort_key", "sort_keys",
  function(o) return flare.json.encode({}, o) end)
takes_options("flare.http.request", "timeout", "timeout_s",
  function(o) return flare.http.request(with({url = no_port}, o)) end)
takes_options("flare.http.submit", "connect_timeout", "connect_timeout_s",
  function(o) return flare.http.submit(with({url = no_port}, o)) end)
takes_options("flare.proc.run", "timeout", "timeout_s",
  function(o) return flare.proc.run(with({argv = {"true"}}, o)) end)
takes_options("flare.proc.spawn", "clearenv", "clear_env",
  function(o) return flare.proc.spawn(with({argv = {"true"}}, o)) end)
takes_options("flare.fs.append_line", "fsnyc", "fsync",
  function(o) return fs.append_line(tmp("l"), "x", o) end)
takes_options("flare.fs.remove", "recursve", "recursive",
  function(o) return fs.remove(tmp("none"), o) end)
takes_options("flare.delta.compress_files", "levle", "level",
  function(o) return flare.delta.compress_files("a", "b", "c", o) end)
takes_options("flare.delta.apply_files", "thread", "threads",
  function(o) return flare.delta.apply_files("a", "b", "c", o) end)
takes_options("flare.delta.verify_files", "expect_base_identiy", "expect_base_identity",
  function(o) return flare.delta.verify_files("a", "b", "c", o) end)
takes_options("flare.delta.compress", "chunk_elemnts", "chunk_elements",
  function(o) return flare.delta.compress({}, {}, o) end)
takes_options("flare.delta.apply", "threds", "threads",
  function(o) return flare.delta.apply({}, "", o) end)
takes_options("flare.emulator.start", "provision_delay", "provision_delay_s", flare.emulator.start)
takes_options("flare.fireworks.connection", "base_ur", "base_url", flare.fireworks.connection)
takes_options("flare.connect", "acount_id", "account_id", flare.connect)
takes_options("flare.openai.connect", "base_ur", "base_url", flare.openai.connect)
takes_options("flare.openai.sampler", "modle", "model",
  function(o) return flare.openai.sampler(with({base_url = no_port}, o)) end)
takes_options("flare.chat.format", "add_generation_promt", "add_generation_prompt",
  function(o) return flare.chat.format({{role = "user", content = "a"}}, o) end)
takes_options("flare.sandbox_native.new_policy", "prefixs", "prefixes",
  flare.sandbox_native.new_policy)
takes_options("flare.recipe", "confg", "config",
  function(o) return flare.recipe(with({name = "m"}, o)) end)
takes_options("flare.recipe.new", "confg", "config",
  function(o) return flare.recipe.new(with({name = "m"}, o)) end)
takes_options("flare.recipe.connect", "base_ur", "base_url", flare.recipe.connect, "flare.connect")
takes_options("flare.weight_syncer", "deploy_mngr", "deploy_mgr", flare.weight_syncer)
takes_options("flare.with_deployment", "on_exitt", "on_exit",
  function(o) return flare.with_deployment({deployment_id = "x"}, print, o) end)
takes_options("flare.distill.rejection_sample", "problem", "problems",
  flare.distill.rejection_sample)
takes_options("flare.distill.dedupe_filter", "ngrm", "ngram", flare.distill.dedupe_filter)
takes_options("flare.pipeline", "stage", "stages", flare.pipeline)
takes_options("flare.pipeline.new", "stage", "stages", flare.pipeline.new)
takes_options("flare.loops.sft", "step", "steps", flare.loops.sft)
takes_options("flare.loops.grpo", "step", "steps", flare.loops.grpo)
takes_options("flare.grpo.advantages", "normalize", "normalize_std",
  function(o) return flare.grpo.advantages({1, 2}, o) end)
takes_options("flare.grpo.datum", "epss", "eps",
  function(o)
    return flare.grpo.datum({tokens = {1}, prompt_tokens = {2}, logprobs = {-1}}, 1, o)
  end)
takes_options("flare.grpo.build_datums", "skip_zero_advantages", "skip_zero_advantage",
  function(o) return flare.grpo.build_datums({}, {}, o) end)
takes_options("flare.grpo.metrics", "group", "groups", flare.grpo.metrics)
takes_options("flare.losses.new", "clip_eps", "clip_epsilon",
  function(o) return flare.losses.new("ppo", o) end)
takes_options("flare.tasks.get", "sed", "seed",
  function(o) return flare.tasks.get("addition", o) end, "flare.tasks.addition")
takes_options("flare.tasks.addition", "digit", "digits", flare.tasks.addition)
takes_options("flare.tasks.reverse", "maxlen", "max_len", flare.tasks.reverse)
takes_options("flare.tasks.sort", "min_length", "min_len", flare.tasks.sort)
takes_options("flare.tasks.countdown", "max_num", "max_number", flare.tasks.countdown)
takes_options("flare.tasks.vowels", "lenght", "length", flare.tasks.vowels)
takes_options("flare.tasks.evaluate", "kk", "k",
  function(o) return flare.tasks.evaluate({}, {}, {}, o) end)
takes_options("flare.verify.math_answer", "tl", "tol",
  function(o) return flare.verify.math_answer("1", 1, o) end)
takes_options("flare.verify.exact", "ignorecase", "ignore_case",
  function(o) return flare.verify.exact("a", "a", o) end)
takes_options("flare.verify.command", "timeout", "timeout_s",
  function(o) return flare.verify.command(with({argv = {"true"}}, o)) end)
takes_options("flare.report.term_chart", "widht", "width",
  function(o) return flare.report.term_chart({1, 2}, o) end)
takes_options("flare.report.term_summary", "colour", "color",
  function(o) return flare.report.term_summary({config = {}, series = {}, checkpoints = {}}, o) end)
takes_options("flare.report.cli", "dri", "dir", flare.report.cli)
takes_options("flare.format.sparkline", "widht", "width",
  function(o) return flare.format.sparkline({1, 2}, o) end)
takes_options("flare.release.register", "familly", "family", flare.release.register)
takes_options("flare.release.families", "registy", "registry", flare.release.families)
takes_options("flare.release.gate", "candidat", "candidate", flare.release.gate)
takes_options("flare.release.replay", "duraton_s", "duration_s", flare.release.replay)
takes_options("flare.sqlite.open", "busy_timeout", "busy_timeout_ms",
  function(o) return flare.sqlite.open(tmp("db"), o) end)
takes_options("flare.test.run_file", "verbos", "verbose",
  function(o) return flare.test.run_file(tmp("none.lua"), o) end)

-- The public functions: "flare.x" and "flare.x.y" for every module x.
local function public_functions()
  local modules, seen = {}, {}
  local function add_module(name)
    if not seen[name] and not name:match("^_") then
      seen[name] = true
      modules[#modules + 1] = name
    end
  end
  for name in pairs(flare) do add_module(name) end
  for _, name in ipairs(flare.repl.c_modules()) do add_module(name) end
  local dir = package.searchpath("flare.cleanup", package.path):match("^(.*)/[^/]*$")
  for _, file in ipairs(fs.list_dir(dir)) do
    local name = file:match("^([%w_]+)%.lua$")
    if name then add_module(name) end
  end
  table.sort(modules)
  local out = {}
  local function callable(v)
    return type(v) == "function" or (type(v) == "table" and (getmetatable(v) or {}).__call ~= nil)
  end
  for _, m in ipairs(modules) do
    local v = flare[m]
    if callable(v) then out[#out + 1] = {name = "flare." .. m, fn = v} end
    if type(v) == "table" then
      local keys = {}
      for k, f in pairs(v) do
        if type(k) == "string" and not k:match("^_") and type(f) == "function" then
          keys[#keys + 1] = k
        end
      end
      table.sort(keys)
      for _, k in ipairs(keys) do
        out[#out + 1] = {name = "flare." .. m .. "." .. k, fn = v[k]}
      end
    end
  end
  return out
end

local function escape(s) return (s:gsub("%p", "%%%0")) end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- Problems are collected, so one run names every function that misbehaves.
local function new_report()
  local problems = {}
  local r = {}
  function r.add(name, text) problems[#problems + 1] = name .. ": " .. text end
  -- The structured misuse error of `name` (raised under the name `who`, when given); returns
  -- its message, or nil after recording what is wrong.
  function r.misuse(name, what, who, ok, err)
    if ok then return r.add(name, what .. ": no error was raised") end
    if type(err) ~= "table" then
      return r.add(name, what .. ": raised a " .. type(err) .. ": " .. tostring(err))
    end
    if err.code ~= "invalid_argument" then
      return r.add(name, what .. ": code " .. tostring(err.code))
    end
    local msg = err.message
    if type(msg) ~= "string" or (who and not msg:find("^" .. escape(who) .. ": ")) then
      return r.add(name, what .. ": the message does not start with '" .. tostring(who) ..
        ": ': " .. tostring(msg))
    end
    if err.retryable ~= false then
      r.add(name, what .. ": retryable is " .. tostring(err.retryable))
    end
    return msg
  end
  function r.expect(name, what, pattern, msg)
    if msg and not msg:find(pattern) then
      r.add(name, what .. ": '" .. msg .. "' does not match " .. pattern)
    end
  end
  function r.check()
    assert.equal(0, #problems, #problems .. " problem(s):\n  " .. table.concat(problems, "\n  "))
  end
  return r
end

local functions = public_functions()

describe("every public flare.* function", function()
  it("is found at run time in the flare table and its modules", function()
    local names = {}
    for _, f in ipairs(functions) do names[f.name] = true end
    for _, expected in ipairs({"flare.sleep", "flare.error", "flare.connect", "flare.http.request",
        "flare.fs.read_file", "flare.json.encode", "flare.delta.inspect", "flare.proc.run",
        "flare.fireworks.connection", "flare.emulator.start", "flare.grpo.build_datums",
        "flare.report.load", "flare.tasks.get", "flare.verify.math_answer", "flare.wait_all",
        "flare.with_deployment", "flare.weight_syncer", "flare.recipe", "flare.cleanup.run_all"}) do
      assert.truthy(names[expected], expected .. " is not among the walked functions")
    end
    assert.truthy(#functions >= 100, "only " .. #functions .. " functions found")
    local skipped = 0
    for _, f in ipairs(functions) do
      if takes_no_argument[f.name] or takes_any_value[f.name] then skipped = skipped + 1 end
    end
    print(string.format("  %d public functions: %d walked, %d skipped (see the lists); " ..
      "%d take options", #functions, #functions - skipped, skipped, count(option_calls)))
  end)

  it("raises invalid_argument naming itself and the argument for a wrong-type first argument",
    function()
      local r = new_report()
      for _, f in ipairs(functions) do
        if not takes_no_argument[f.name] and not takes_any_value[f.name] then
          local msg = r.misuse(f.name, "wrong type", f.name, pcall(f.fn, WRONG))
          r.expect(f.name, "wrong type", "'[%w_%.%[%]]+' must be .+, got thread$", msg)
          -- A first argument that is an options table must be listed with takes_options.
          if msg and msg:find("argument 'opts' must be", 1, true) and not option_calls[f.name] then
            r.add(f.name, "takes options: add it with takes_options")
          end
        end
      end
      r.check()
    end)

  it("rejects an unknown option with the known ones, and a near miss with a did-you-mean",
    function()
      local r = new_report()
      local walked = {}
      for _, f in ipairs(functions) do walked[f.name] = true end
      for name, call in pairs(option_calls) do
        if not walked[name] then r.add(name, "takes options but is not a public function") end
        local fn, near, meant, who = call[1], call[2], call[3], call.who or name
        local msg = r.misuse(name, "unknown option", who, pcall(fn, {zz_no_such_option = 1}))
        r.expect(name, "unknown option",
          "unknown option 'zz_no_such_option' %(known: [%w_, ]*" .. escape(meant), msg)
        msg = r.misuse(name, "near miss", who, pcall(fn, {[near] = 1}))
        r.expect(name, "near miss", "unknown option '" .. escape(near) .. "' %(did you mean '" ..
          escape(meant) .. "'%?%)", msg)
      end
      r.check()
    end)

  it("names an option of the wrong type", function()
    local r = new_report()
    for name, call in pairs(option_calls) do
      local fn, meant, who = call[1], call[3], call.who or name
      local msg = r.misuse(name, "option of the wrong type", who, pcall(fn, {[meant] = WRONG}))
      r.expect(name, "option of the wrong type",
        "option '" .. escape(meant) .. "' must be .+, got thread$", msg)
    end
    r.check()
  end)

  it("raises invalid_argument naming the class when a C++ object's method gets another self",
    function()
      local r = new_report()
      local conn = flare.fireworks.connection{base_url = "http://127.0.0.1:9", api_key = "k"}
      local sampler = conn:sampler{model = "accounts/x/deployments/y"}
      local child = flare.proc.spawn{argv = {"true"}}
      local em = flare.emulator.start{provision_delay_s = 0}
      local objects = {conn = conn, sampler = sampler, batch = sampler:submit{prompts = {}},
        child = child, emulator = em, future = conn:submit{path = "/x", retries = 1},
        handle = flare.http.submit{url = no_port, connect_timeout_s = 1},
        db = flare.sqlite.open(tmp("self.db"))}
      local walked = 0
      for label, obj in pairs(objects) do
        local mt = getmetatable(obj)
        local class = mt and mt.__name
        if type(class) ~= "string" then r.add(label, "its metatable has no __name") end
        for name, m in pairs(type(mt.__index) == "table" and mt.__index or {}) do
          walked = walked + 1
          local msg = r.misuse(label .. ":" .. name, "wrong self", nil, pcall(m, WRONG))
          r.expect(label .. ":" .. name, "wrong self",
            "^[%w_.]+:[%w_]+: argument 'self' must be a " .. escape(tostring(class)) ..
            ", got thread$", msg)
        end
      end
      assert.truthy(walked >= 20, "only " .. walked .. " methods walked")
      -- A method's own misuse names the method and the option.
      r.expect("conn:request", "unknown option",
        "^conn:request: unknown option 'pth' %(did you mean 'path'%?%)$",
        r.misuse("conn:request", "unknown option", "conn:request",
          pcall(conn.request, conn, {pth = "/x"})))
      r.expect("sampler:submit", "near miss",
        "^sampler:sample: unknown option 'max_token' %(did you mean 'max_tokens'%?%)$",
        r.misuse("sampler:submit", "near miss", "sampler:sample",
          pcall(sampler.submit, sampler, {prompts = {}, max_token = 1})))
      r.expect("child:wait", "option type",
        "^child:wait: option 'timeout_s' must be a number, got string$",
        r.misuse("child:wait", "option type", "child:wait",
          pcall(child.wait, child, {timeout_s = "1"})))
      objects.future:cancel()
      child:wait()
      em:stop()
      objects.db:close()
      for _, suffix in ipairs({"", "-wal", "-shm"}) do os.remove(tmp("self.db") .. suffix) end
      r.check()
    end)

  it("raises invalid_argument from the client objects' methods given a wrong-type argument",
    function()
      local r = new_report()
      local fw = flare.connect{quiet = true}
      -- Constructors (called by fw) and methods that take no argument.
      local skip = {["deployments:new"] = true, ["deployments:list"] = true,
        ["sampler:new"] = true, ["sampler:stats"] = true, ["sampler:step_completed"] = true,
        ["sampler:window_size"] = true, ["trainer:new"] = true,
        ["trainer:get"] = true, ["trainer:close"] = true, ["trainer:list_checkpoints"] = true}
      local objects = {deployments = fw.deployments, sampler = fw:sampler{model = "accounts/x/y"},
        trainer = fw:trainer{base_model = "accounts/local/models/tiny-gpt", poll_interval_s = 0.05}}
      local walked = 0
      for label, obj in pairs(objects) do
        for name, m in pairs(getmetatable(obj).__index) do
          if type(m) == "function" and not name:match("^_") and not skip[label .. ":" .. name] then
            walked = walked + 1
            local msg = r.misuse(label .. ":" .. name, "wrong type", nil, pcall(m, obj, WRONG))
            r.expect(label .. ":" .. name, "wrong type", "^[%w_.:]+: ", msg)
          end
        end
      end
      assert.truthy(walked >= 20, "only " .. walked .. " methods walked")
      r.check()
    end)
end)

