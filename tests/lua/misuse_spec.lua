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
}

-- Functions that accept a value of any type as their first argument (so no type is wrong).
local takes_any_value = {
  ["flare.args.check"] = "checks a value of any type",
  ["flare.test.deep_equal"] = "compares values of any type",
  ["flare.test.error_text"] = "describes an error value of any type",
}

-- Functions whose options table is not the first argument, or needs other valid fields to be
-- reached: how to call each with `opts`, and a misspelt option with the name it stands for.
local function tmp(name)
  return (os.getenv("TMPDIR") or "/tmp") .. "/flare-misuse-" .. fs.getpid() .. "-" .. name
end
local option_calls = {
  ["flare.error"] = {function(o) flare.error(o) end, "mesage", "message"},
  ["flare.json.encode"] = {function(o) return flare.json.encode({}, o) end, "sort_key", "sort_keys"},
  ["flare.http.request"] = {function(o)
    o.url = "http://127.0.0.1:9/"
    return flare.http.request(o)
  end, "timeout", "timeout_s"},
  ["flare.http.submit"] = {function(o)
    o.url = "http://127.0.0.1:9/"
    return flare.http.submit(o)
  end, "connect_timeout", "connect_timeout_s"},
  ["flare.proc.run"] = {function(o)
    o.argv = {"true"}
    return flare.proc.run(o)
  end, "timeout", "timeout_s"},
  ["flare.proc.spawn"] = {function(o)
    o.argv = {"true"}
    return flare.proc.spawn(o)
  end, "clearenv", "clear_env"},
  ["flare.fs.append_line"] = {function(o) return fs.append_line(tmp("line"), "x", o) end, "fsnyc", "fsync"},
  ["flare.fs.remove"] = {function(o) return fs.remove(tmp("none"), o) end, "recursve", "recursive"},
  ["flare.delta.compress_files"] = {function(o) return flare.delta.compress_files("a", "b", "c", o) end,
    "levle", "level"},
  ["flare.delta.apply_files"] = {function(o) return flare.delta.apply_files("a", "b", "c", o) end,
    "thread", "threads"},
  ["flare.delta.verify_files"] = {function(o) return flare.delta.verify_files("a", "b", "c", o) end,
    "expect_base_identiy", "expect_base_identity"},
  ["flare.delta.compress"] = {function(o) return flare.delta.compress({}, {}, o) end, "chunk_elemnts",
    "chunk_elements"},
  ["flare.delta.apply"] = {function(o) return flare.delta.apply({}, "", o) end, "threds", "threads"},
  ["flare.emulator.start"] = {function(o) return flare.emulator.start(o) end, "provision_delay",
    "provision_delay_s"},
  ["flare.fireworks.connection"] = {function(o) return flare.fireworks.connection(o) end, "base_ur", "base_url"},
  ["flare.connect"] = {function(o) return flare.connect(o) end, "acount_id", "account_id"},
  ["flare.args.options"] = {function(o) return flare.args.options(o, {pretty = "boolean"}, "flare.args.options") end,
    "prety", "pretty"},
  ["flare.recipe"] = {function(o)
    o.name = "misuse"
    return flare.recipe(o)
  end, "confg", "config"},
  ["flare.recipe.new"] = {function(o)
    o.name = "misuse"
    return flare.recipe.new(o)
  end, "confg", "config"},
  ["flare.weight_syncer"] = {function(o) return flare.weight_syncer(o) end, "deploy_mngr", "deploy_mgr"},
  ["flare.with_deployment"] = {function(o) return flare.with_deployment({deployment_id = "x"}, print, o) end,
    "on_exitt", "on_exit"},
  ["flare.distill.rejection_sample"] = {function(o) return flare.distill.rejection_sample(o) end, "problem",
    "problems"},
  ["flare.distill.dedupe_filter"] = {function(o) return flare.distill.dedupe_filter(o) end, "ngrm", "ngram"},
  ["flare.grpo.advantages"] = {function(o) return flare.grpo.advantages({1, 2}, o) end, "normalize",
    "normalize_std"},
  ["flare.grpo.datum"] = {function(o)
    return flare.grpo.datum({tokens = {1}, prompt_tokens = {2}, logprobs = {-1}}, 1, o)
  end, "epss", "eps"},
  ["flare.grpo.build_datums"] = {function(o) return flare.grpo.build_datums({}, {}, o) end,
    "skip_zero_advantages", "skip_zero_advantage"},
  ["flare.grpo.metrics"] = {function(o) return flare.grpo.metrics(o) end, "group", "groups"},
  ["flare.tasks.get"] = {function(o) return flare.tasks.get("addition", o) end, "sed", "seed",
    who = "flare.tasks.addition"},
  ["flare.tasks.addition"] = {function(o) return flare.tasks.addition(o) end, "digit", "digits"},
  ["flare.tasks.reverse"] = {function(o) return flare.tasks.reverse(o) end, "maxlen", "max_len"},
  ["flare.tasks.sort"] = {function(o) return flare.tasks.sort(o) end, "min_length", "min_len"},
  ["flare.tasks.countdown"] = {function(o) return flare.tasks.countdown(o) end, "max_num", "max_number"},
  ["flare.tasks.vowels"] = {function(o) return flare.tasks.vowels(o) end, "lenght", "length"},
  ["flare.recipe.connect"] = {function(o) return flare.recipe.connect(o) end, "base_ur", "base_url",
    who = "flare.connect"},
  ["flare.verify.math_answer"] = {function(o) return flare.verify.math_answer("1", 1, o) end, "tl", "tol"},
  ["flare.verify.exact"] = {function(o) return flare.verify.exact("a", "a", o) end, "ignorecase",
    "ignore_case"},
  ["flare.verify.command"] = {function(o)
    o.argv = {"true"}
    return flare.verify.command(o)
  end, "timeout", "timeout_s"},
  ["flare.report.term_chart"] = {function(o) return flare.report.term_chart({1, 2}, o) end, "widht", "width"},
  ["flare.report.term_summary"] = {function(o)
    return flare.report.term_summary({config = {}, series = {}, checkpoints = {}}, o)
  end, "colour", "color"},
  ["flare.report.cli"] = {function(o) return flare.report.cli(o) end, "dri", "dir"},
  ["flare.tasks.evaluate"] = {function(o) return flare.tasks.evaluate({}, {}, {}, o) end, "kk", "k"},
  ["flare.test.run_file"] = {function(o) return flare.test.run_file(tmp("none.lua"), o) end, "verbos",
    "verbose"},
}

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
        if type(k) == "string" and not k:match("^_") and type(f) == "function" then keys[#keys + 1] = k end
      end
      table.sort(keys)
      for _, k in ipairs(keys) do out[#out + 1] = {name = "flare." .. m .. "." .. k, fn = v[k]} end
    end
  end
  return out
end

local function escape(s) return (s:gsub("%p", "%%%0")) end

-- Problems are collected, so one run names every function that misbehaves.
local function new_report()
  local problems = {}
  local r = {}
  function r.add(name, text) problems[#problems + 1] = name .. ": " .. text end
  -- The structured misuse error of `name` (raised under the name `who`, when given); returns its
  -- message or nil.
  function r.misuse(name, what, who, ok, err)
    if ok then return r.add(name, what .. ": no error was raised") end
    if type(err) ~= "table" then return r.add(name, what .. ": raised a " .. type(err) .. ": " .. tostring(err)) end
    if err.code ~= "invalid_argument" then return r.add(name, what .. ": code " .. tostring(err.code)) end
    if type(err.message) ~= "string" or (who and not err.message:find("^" .. escape(who) .. ": ")) then
      return r.add(name, what .. ": the message does not start with '" .. tostring(who) .. ": ': " ..
        tostring(err.message))
    end
    if err.retryable ~= false then r.add(name, what .. ": retryable is " .. tostring(err.retryable)) end
    return err.message
  end
  function r.expect(name, what, pattern, msg)
    if msg and not msg:find(pattern) then r.add(name, what .. ": '" .. msg .. "' does not match " .. pattern) end
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
    print(string.format("  %d public functions: %d walked, %d skipped (see the lists); %d option tables",
      #functions, #functions - skipped, skipped, (function() local n = 0 for _ in pairs(option_calls) do
        n = n + 1 end return n end)()))
  end)

  it("raises invalid_argument naming itself and the argument for a wrong-type first argument", function()
    local r = new_report()
    for _, f in ipairs(functions) do
      if not takes_no_argument[f.name] and not takes_any_value[f.name] then
        local msg = r.misuse(f.name, "wrong type", f.name, pcall(f.fn, WRONG))
        r.expect(f.name, "wrong type", "'[%w_%.%[%]]+' must be .+, got thread$", msg)
        -- A first argument that is an options table must be listed with an option call.
        if msg and msg:find("argument 'opts' must be", 1, true) and not option_calls[f.name] then
          r.add(f.name, "takes options: add it to option_calls")
        end
      end
    end
    r.check()
  end)

  it("rejects an unknown option with the known ones, and a near miss with a did-you-mean", function()
    local r = new_report()
    local walked = {}
    for _, f in ipairs(functions) do walked[f.name] = true end
    for name, call in pairs(option_calls) do
      if not walked[name] then r.add(name, "has an option call but is not a public function") end
      local fn, near, meant, who = call[1], call[2], call[3], call.who or name
      local msg = r.misuse(name, "unknown option", who, pcall(fn, {zz_no_such_option = 1}))
      r.expect(name, "unknown option", "unknown option 'zz_no_such_option' %(known: [%w_, ]*" .. escape(meant), msg)
      msg = r.misuse(name, "near miss", who, pcall(fn, {[near] = 1}))
      r.expect(name, "near miss", "unknown option '" .. escape(near) .. "' %(did you mean '" .. escape(meant) ..
        "'%?%)", msg)
    end
    r.check()
  end)

  it("names an option of the wrong type", function()
    local r = new_report()
    for name, call in pairs(option_calls) do
      local fn, meant, who = call[1], call[3], call.who or name
      local msg = r.misuse(name, "option of the wrong type", who, pcall(fn, {[meant] = WRONG}))
      r.expect(name, "option of the wrong type", "option '" .. escape(meant) .. "' must be .+, got thread$", msg)
    end
    r.check()
  end)

  it("raises invalid_argument naming the class when a C++ object's method gets another self", function()
    local r = new_report()
    local conn = flare.fireworks.connection{base_url = "http://127.0.0.1:9", api_key = "misuse-key"}
    local sampler = conn:sampler{model = "accounts/x/deployments/y"}
    local child = flare.proc.spawn{argv = {"true"}}
    local em = flare.emulator.start{provision_delay_s = 0}
    local objects = {conn = conn, sampler = sampler, batch = sampler:submit{prompts = {}}, child = child,
      handle = flare.http.submit{url = "http://127.0.0.1:9/", connect_timeout_s = 1},
      future = conn:submit{path = "/x", retries = 1}, emulator = em}
    local walked = 0
    for label, obj in pairs(objects) do
      local mt = getmetatable(obj)
      local class = mt and mt.__name
      if type(class) ~= "string" then r.add(label, "its metatable has no __name") end
      for name, m in pairs(type(mt.__index) == "table" and mt.__index or {}) do
        walked = walked + 1
        local msg = r.misuse(label .. ":" .. name, "wrong self", nil, pcall(m, WRONG))
        r.expect(label .. ":" .. name, "wrong self", "^[%w_.]+:[%w_]+: argument 'self' must be a " ..
          escape(tostring(class)) .. ", got thread$", msg)
      end
    end
    assert.truthy(walked >= 20, "only " .. walked .. " methods walked")
    -- A method's own misuse names the method and the option.
    r.expect("conn:request", "unknown option", "^conn:request: unknown option 'pth' %(did you mean 'path'%?%)$",
      r.misuse("conn:request", "unknown option", "conn:request", pcall(conn.request, conn, {pth = "/x"})))
    r.expect("sampler:submit", "near miss", "^sampler:sample: unknown option 'max_token' %(did you mean 'max_tokens'%?%)$",
      r.misuse("sampler:submit", "near miss", "sampler:sample", pcall(sampler.submit, sampler, {prompts = {}, max_token = 1})))
    r.expect("child:wait", "option type", "^child:wait: option 'timeout_s' must be a number, got string$",
      r.misuse("child:wait", "option type", "child:wait", pcall(child.wait, child, {timeout_s = "1"})))
    objects.future:cancel()
    child:wait()
    em:stop()
    r.check()
  end)
end)

