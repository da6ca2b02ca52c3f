-- flare.test: a small busted-style spec runner used by `flare test`.
--   describe(name, fn), it(name, fn), pending(name), before_each(fn), after_each(fn)
--   assert(v, msg), assert.equal(expected, actual), assert.same(expected, actual) (deep),
--   assert.error_matches(fn, pattern), assert.has_error(fn), assert.truthy(v), assert.falsy(v),
--   assert.is_nil(v), assert.not_nil(v), assert.near(expected, actual, tol), assert.matches(pat, s)
local M = {}

local function describe_value(v, depth)
  depth = depth or 0
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) ~= "table" or depth > 2 then return tostring(v) end
  local mt = getmetatable(v)
  if mt and mt.__tostring then return tostring(v) end
  local parts, n = {}, 0
  for k, val in pairs(v) do
    n = n + 1
    if n > 8 then parts[#parts + 1] = "..."; break end
    parts[#parts + 1] = "[" .. describe_value(k, depth + 1) .. "]=" ..
      describe_value(val, depth + 1)
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function deep_equal(a, b, path, seen)
  if a == b then return true end
  if type(a) ~= type(b) then
    return false, path .. ": expected " .. describe_value(a) .. ", got " .. describe_value(b)
  end
  if type(a) ~= "table" then
    if a ~= a and b ~= b then return true end  -- NaN
    return false, path .. ": expected " .. describe_value(a) .. ", got " .. describe_value(b)
  end
  seen = seen or {}
  if seen[a] == b then return true end
  seen[a] = b
  for k, v in pairs(a) do
    local ok, why = deep_equal(v, b[k], path .. "[" .. describe_value(k) .. "]", seen)
    if not ok then return false, why end
  end
  for k in pairs(b) do
    if a[k] == nil then
      return false, path .. "[" .. describe_value(k) .. "]: unexpected " .. describe_value(b[k])
    end
  end
  return true
end
M.deep_equal = deep_equal

local function error_text(err)
  if type(err) == "table" then
    local mt = getmetatable(err)
    if mt and mt.__tostring then return tostring(err) end
    local s = tostring(err.message or err.msg or "")
    if err.code then s = tostring(err.code) .. ": " .. s end
    return s
  end
  return tostring(err)
end
M.error_text = error_text

local function fail(msg, level)
  error(msg, (level or 1) + 2)
end

local function make_assert()
  local a = {}
  function a.equal(expected, actual, msg)
    if expected ~= actual and not (expected ~= expected and actual ~= actual) then
      fail((msg and msg .. ": " or "") .. "expected " .. describe_value(expected) .. ", got " ..
        describe_value(actual))
    end
  end
  a.equals = a.equal
  function a.same(expected, actual, msg)
    local ok, why = deep_equal(expected, actual, "value")
    if not ok then fail((msg and msg .. ": " or "") .. why) end
  end
  function a.truthy(v, msg) if not v then fail(msg or ("expected a truthy value, got " ..
    describe_value(v))) end end
  function a.falsy(v, msg) if v then fail(msg or ("expected a falsy value, got " ..
    describe_value(v))) end end
  a.is_true = function(v, msg) a.equal(true, v, msg) end
  a.is_false = function(v, msg) a.equal(false, v, msg) end
  function a.is_nil(v, msg) if v ~= nil then fail(msg or ("expected nil, got " ..
    describe_value(v))) end end
  function a.not_nil(v, msg) if v == nil then fail(msg or "expected a value, got nil") end end
  function a.near(expected, actual, tol, msg)
    if type(actual) ~= "number" or math.abs(expected - actual) > tol then
      fail((msg and msg .. ": " or "") .. "expected " .. tostring(expected) .. " ± " ..
        tostring(tol) ..
        ", got " .. describe_value(actual))
    end
  end
  function a.matches(pattern, s, msg)
    if type(s) ~= "string" or not s:find(pattern) then
      fail((msg and msg .. ": " or "") .. "expected a string matching " ..
        describe_value(pattern) ..
        ", got " .. describe_value(s))
    end
  end
  function a.has_error(fn, msg)
    local ok = pcall(fn)
    if ok then fail(msg or "expected an error, none was raised") end
  end
  function a.error_matches(fn, pattern, msg)
    local ok, err = pcall(fn)
    if ok then fail((msg and msg .. ": " or "") .. "expected an error matching " ..
      describe_value(pattern) ..
      ", none was raised") end
    local text = error_text(err)
    if not text:find(pattern) then
      fail((msg and msg .. ": " or "") .. "error " .. describe_value(text) .. " does not match " ..
        describe_value(pattern))
    end
    return err
  end
  return setmetatable(a, {__call = function(_, v, msg, ...)
    if not v then fail(msg or "assertion failed!") end
    return v, msg, ...
  end})
end

-- Runs one spec file; prints failures; returns passed, failed, skipped.
function M.run_file(path, opts)
  opts = opts or {}
  local out = opts.out or io.stdout
  local root = {name = nil, children = {}, before = {}, after = {}}
  local stack = {root}
  local env = setmetatable({}, {__index = _G})
  env.assert = make_assert()
  env.describe = function(name, fn)
    local s = {name = name, children = {}, before = {}, after = {}}
    local top = stack[#stack]
    top.children[#top.children + 1] = {suite = s}
    stack[#stack + 1] = s
    fn()
    stack[#stack] = nil
  end
  env.context = env.describe
  env.it = function(name, fn)
    local top = stack[#stack]
    top.children[#top.children + 1] = {test = {name = name, fn = fn}}
  end
  env.pending = function(name)
    local top = stack[#stack]
    top.children[#top.children + 1] = {test = {name = name}}
  end
  env.before_each = function(fn) local t = stack[#stack].before; t[#t + 1] = fn end
  env.after_each = function(fn) local t = stack[#stack].after; t[#t + 1] = fn end

  local chunk, err = loadfile(path)
  if not chunk then
    out:write("FAIL ", tostring(err), "\n")
    return 0, 1, 0
  end
  setfenv(chunk, env)
  local loaded, load_err = xpcall(chunk, debug.traceback)
  if not loaded then
    out:write("FAIL ", path, ": error while loading the spec\n    ", tostring(load_err), "\n")
    return 0, 1, 0
  end

  local passed, failed, skipped = 0, 0, 0
  local function run_suite(suite, names, befores, afters)
    local b, a = {}, {}
    for _, f in ipairs(befores) do b[#b + 1] = f end
    for _, f in ipairs(suite.before) do b[#b + 1] = f end
    for _, f in ipairs(suite.after) do a[#a + 1] = f end
    for _, f in ipairs(afters) do a[#a + 1] = f end
    for _, child in ipairs(suite.children) do
      if child.suite then
        local n = {unpack(names)}
        n[#n + 1] = child.suite.name
        run_suite(child.suite, n, b, a)
      else
        local t = child.test
        local full = table.concat(names, " > ") .. (#names > 0 and " > " or "") .. t.name
        if not t.fn then
          skipped = skipped + 1
        else
          local ok_all, msg = true, nil
          for _, f in ipairs(b) do
            local ok, e = xpcall(f, debug.traceback)
            if not ok then ok_all, msg = false, "before_each: " .. error_text(e); break end
          end
          if ok_all then
            local ok, e = xpcall(t.fn, function(e)
              return debug.traceback(error_text(e), 2)
            end)
            if not ok then ok_all, msg = false, e end
          end
          for _, f in ipairs(a) do
            local ok, e = xpcall(f, debug.traceback)
            if not ok and ok_all then ok_all, msg = false, "after_each: " .. error_text(e) end
          end
          if ok_all then
            passed = passed + 1
            if opts.verbose then out:write("ok   ", path, ": ", full, "\n") end
          else
            failed = failed + 1
            out:write("FAIL ", path, ": ", full, "\n    ", (tostring(msg):gsub("\n",
              "\n    ")), "\n")
          end
        end
      end
    end
  end
  run_suite(root, {}, {}, {})
  return passed, failed, skipped
end

-- Arguments are checked before each call (a misuse raises invalid_argument naming the field).
return require("flare.args").checked(M, "flare.test", {
  run_file = {"path:string", {"opts", {verbose = "boolean"}}},
})
