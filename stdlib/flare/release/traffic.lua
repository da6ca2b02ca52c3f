-- flare.release.traffic: replays production-like traffic against a gateway (or any server of
-- the completions protocol), open loop: request i starts at (i - 1) / rate seconds whatever
-- the answers before it did, so a slow server meets the same offered load.
--
--   traffic.read_prompts(path) -> list of {prompt = | messages =, user =, task =, answer =, ...}
--     (JSONL: a string, or an object with prompt or messages; other fields are kept for the
--     verifier)
--   traffic.replay{prompts = list | path, url =, rate =, duration_s =, verifier = NAME,
--     users = 100, model = "replay", max_tokens = 16, temperature = 0, api_key =,
--     timeout_s = 30, max_in_flight = 1024, on_answer = fn(item, response, score),
--     stop = fn() -> true to stop sending early, interval_s = 1, on_interval = fn(tick)}
--   -> {sent =, answered =, elapsed_s =, achieved_rate =, statuses = {["200"] = n, ...},
--       p50_ms =, p95_ms =, p99_ms =, scored =, mean_score =, feedback_posted =, by_version =}
-- Each answer is scored with the verifier (a flare.tasks task name, or the item's own `task`)
-- and the score posted to the gateway (POST /__flare_feedback?id=ID&score=S, the answer's
-- x-flare-request-id), where it lands in the registry's requests table as the request's
-- feedback. Every interval_s, on_interval gets the answers of that interval per version:
-- tick = {t = seconds since the start, versions = {[version] = {n =, errors =, error_rate =,
-- p50_ms =, p95_ms =}}} (answers without x-flare-version count as "-"). Users: the item's
-- `user`, else one of `users` ids in turn (the gateway's canary is sticky per x-user-id).
local json = require("flare.json")
local fs = require("flare.fs")
local args = require("flare.args")
local tasks = require("flare.tasks")
local stats = require("flare.release.stats")
local errors = require("flare.release.errors")

local M = {}
local WHO = "flare.release.traffic.replay"

function M.read_prompts(path)
  local text = fs.read_file(path)
  if not text then errors.invalid(WHO, "option 'prompts': no such file " .. tostring(path)) end
  local out, n = {}, 0
  for line in (text .. "\n"):gmatch("(.-)\n") do
    n = n + 1
    if not line:match("^%s*$") then
      local ok, v = pcall(json.decode, line)
      if not ok then
        errors.invalid(WHO, path .. " line " .. n .. ": not JSON: " .. tostring(v))
      end
      if type(v) == "string" then v = {prompt = v} end
      if type(v) ~= "table" or (type(v.prompt) ~= "string" and type(v.messages) ~= "table") then
        errors.invalid(WHO, path .. " line " .. n .. ": a prompt is a string or an object " ..
          "with 'prompt' (a string) or 'messages'")
      end
      out[#out + 1] = v
    end
  end
  if #out == 0 then errors.invalid(WHO, "option 'prompts': " .. path .. " holds no prompt") end
  return out
end

local function answer_text(item, body)
  local ok, v = pcall(json.decode, body or "")
  if not ok or type(v) ~= "table" or type(v.choices) ~= "table" or not v.choices[1] then
    return nil
  end
  local c = v.choices[1]
  if item.messages then return c.message and c.message.content end
  return c.text
end

function M.replay(o)
  o = args.options(o, {prompts = "table|string", url = "string", rate = "number",
    duration_s = "number", verifier = "nil|string", users = "nil|number", model = "nil|string",
    max_tokens = "nil|number", temperature = "nil|number", api_key = "nil|string",
    timeout_s = "nil|number", max_in_flight = "nil|number", on_answer = "nil|function",
    stop = "nil|function", interval_s = "nil|number", on_interval = "nil|function"}, WHO)
  local prompts = type(o.prompts) == "string" and M.read_prompts(o.prompts) or o.prompts
  if #prompts == 0 then errors.invalid(WHO, "option 'prompts' is empty") end
  if not o.url or not o.url:match("^https?://[^/]+") then
    errors.invalid(WHO, "option 'url' must be http://host:port, got " .. tostring(o.url))
  end
  local url = o.url:gsub("/+$", "")
  if not (o.rate and o.rate > 0) then
    errors.invalid(WHO, "option 'rate' must be above 0 requests per second, got " ..
      tostring(o.rate))
  end
  if not (o.duration_s and o.duration_s > 0) then
    errors.invalid(WHO, "option 'duration_s' must be above 0, got " .. tostring(o.duration_s))
  end
  local verifiers = {}
  local function verifier(name)
    if not name then return nil end
    if not verifiers[name] then verifiers[name] = tasks.get(name, {seed = 0}) end
    return verifiers[name]
  end
  if o.verifier then verifier(o.verifier) end  -- an unknown name fails before any request
  local users = o.users or 100
  local headers = {["Content-Type"] = "application/json"}
  if o.api_key then headers.Authorization = "Bearer " .. o.api_key end
  local total = math.max(1, math.floor(o.rate * o.duration_s + 0.5))
  local max_in_flight = o.max_in_flight or 1024
  local out = {sent = 0, answered = 0, statuses = {}, scored = 0, feedback_posted = 0,
    feedback_failed = 0, skipped = 0, by_version = {}, error_messages = {}}
  local latencies, scores, in_flight, feedback = {}, {}, {}, {}
  local tick = {}  -- this interval's answers per version
  local function note(version, ms, failed)
    local v = tick[version] or {latencies = {}, errors = 0}
    tick[version] = v
    v.latencies[#v.latencies + 1] = ms
    if failed then v.errors = v.errors + 1 end
  end
  local function finish(f)
    local ok, r = pcall(f.handle.wait, f.handle)
    local status = ok and tostring(r.status) or "error"
    out.statuses[status] = (out.statuses[status] or 0) + 1
    out.answered = out.answered + 1
    if not ok then
      note("-", 1000 * (flare.clock() - f.started), true)
      if #out.error_messages < 5 then
        out.error_messages[#out.error_messages + 1] = type(r) == "table" and r.message or
          tostring(r)
      end
      return
    end
    latencies[#latencies + 1] = 1000 * r.total_s
    local version = r.headers["x-flare-version"]
    note(version or "-", 1000 * r.total_s, r.status >= 500)
    if version then
      local v = out.by_version[version] or {n = 0, errors = 0}
      out.by_version[version] = v
      v.n = v.n + 1
      if r.status >= 500 then v.errors = v.errors + 1 end
    end
    local task = verifier(o.verifier or f.item.task)
    local score
    if task and r.status == 200 then
      local text = answer_text(f.item, r.body)
      if text then
        score = task:reward(f.item, text)
        scores[#scores + 1] = score
        out.scored = out.scored + 1
        local id = r.headers["x-flare-request-id"]
        if id then
          feedback[#feedback + 1] = flare.http.submit{method = "POST",
            url = url .. "/__flare_feedback?id=" .. id .. "&score=" ..
              string.format("%.6f", score), timeout_s = o.timeout_s or 30}
        end
      end
    end
    if o.on_answer then o.on_answer(f.item, r, score) end
  end
  local function reap()
    local still = {}
    for _, f in ipairs(in_flight) do
      if f.handle:done() then finish(f) else still[#still + 1] = f end
    end
    in_flight = still
  end
  local t0 = flare.clock()
  local interval = o.interval_s or 1
  local next_tick = t0 + interval
  local function maybe_tick(force)
    if not o.on_interval or (flare.clock() < next_tick and not force) then return end
    local versions = {}
    for v, a in pairs(tick) do
      table.sort(a.latencies)
      versions[v] = {n = #a.latencies, errors = a.errors, error_rate = a.errors / #a.latencies,
        p50_ms = stats.percentile(a.latencies, 0.5), p95_ms = stats.percentile(a.latencies, 0.95)}
    end
    tick = {}
    next_tick = next_tick + interval
    o.on_interval({t = flare.clock() - t0, versions = versions})
  end
  local next_reap = t0
  for i = 1, total do
    if o.stop and o.stop() then break end
    local due = t0 + (i - 1) / o.rate
    local wait = due - flare.clock()
    if wait > 0 then flare.sleep(wait) end
    -- answers are collected every 5 ms (each look goes over every request in flight)
    if flare.clock() >= next_reap or #in_flight >= max_in_flight then
      reap()
      next_reap = flare.clock() + 0.005
    end
    maybe_tick()
    if #in_flight >= max_in_flight then
      out.skipped = out.skipped + 1  -- the server fell this far behind: not sent
    else
      local item = prompts[(i - 1) % #prompts + 1]
      local body = {model = item.model or o.model or "replay",
        max_tokens = item.max_tokens or o.max_tokens or 16,
        temperature = item.temperature or o.temperature or 0}
      local route = "/inference/v1/completions"
      if item.messages then
        body.messages = item.messages
        route = "/inference/v1/chat/completions"
      else
        body.prompt = item.prompt
      end
      local h = {}
      for k, v in pairs(headers) do h[k] = v end
      h["x-user-id"] = tostring(item.user or ("user-" .. ((i - 1) % users + 1)))
      local handle = flare.http.submit{method = "POST", url = url .. route, headers = h,
        body = json.encode(body), timeout_s = o.timeout_s or 30}
      in_flight[#in_flight + 1] = {item = item, started = flare.clock(), handle = handle}
      out.sent = out.sent + 1
    end
  end
  out.send_s = flare.clock() - t0
  while #in_flight > 0 do
    flare.sleep(0.005)
    reap()
    maybe_tick()
  end
  maybe_tick(true)
  out.elapsed_s = flare.clock() - t0
  for _, h in ipairs(feedback) do
    local ok, r = pcall(h.wait, h)
    if ok and r.status == 204 then
      out.feedback_posted = out.feedback_posted + 1
    else
      out.feedback_failed = out.feedback_failed + 1
    end
  end
  -- the offered rate: requests sent over the time their start times spanned
  out.achieved_rate = out.sent > 1 and (out.sent - 1) / math.max(out.send_s, 1e-9) or out.sent
  table.sort(latencies)
  out.p50_ms = stats.percentile(latencies, 0.5)
  out.p95_ms = stats.percentile(latencies, 0.95)
  out.p99_ms = stats.percentile(latencies, 0.99)
  out.mean_score = #scores > 0 and stats.mean(scores) or nil
  return out
end

-- Writes n problems of each task (flare.tasks, from seed) as a prompts file for replay:
-- one JSON object a line with the problem's fields and its task (the verifier's name).
function M.write_prompts(path, o)
  o = args.options(o, {tasks = "table", n = "number", seed = "nil|number", options = "nil|table"},
    "flare.release.traffic.write_prompts")
  local gens, lines = {}, {}
  for k, name in ipairs(o.tasks) do
    local opts = {seed = (o.seed or 0) + k}
    for key, v in pairs((o.options or {})[name] or {}) do opts[key] = v end
    gens[k] = tasks.get(name, opts)
  end
  for _ = 1, o.n do
    for _, g in ipairs(gens) do
      lines[#lines + 1] = json.encode(g:sample(1)[1], {sort_keys = true})
    end
  end
  local text = table.concat(lines, "\n") .. "\n"
  fs.write_file_atomic(path, text)
  return path
end

function M.summary(r, target_rate)
  local codes = {}
  for k in pairs(r.statuses) do codes[#codes + 1] = k end
  table.sort(codes)
  local parts = {}
  for _, k in ipairs(codes) do parts[#parts + 1] = k .. ": " .. r.statuses[k] end
  local lines = {
    string.format("sent %d requests in %.2fs: %.1f req/s (target %g)%s", r.sent, r.send_s,
      r.achieved_rate, target_rate, r.skipped > 0 and
        string.format(", %d not sent (too many in flight)", r.skipped) or ""),
    "statuses " .. (#parts > 0 and table.concat(parts, ", ") or "-") ..
      (#r.error_messages > 0 and (" (" .. r.error_messages[1] .. ")") or ""),
    r.p50_ms and string.format("latency p50 %.1f ms, p95 %.1f ms, p99 %.1f ms", r.p50_ms,
      r.p95_ms, r.p99_ms) or "latency -",
  }
  local versions = {}
  for v in pairs(r.by_version) do versions[#versions + 1] = v end
  table.sort(versions)
  for _, v in ipairs(versions) do
    local m = r.by_version[v]
    lines[#lines + 1] = string.format("  %-24s %6d answers, %d errors", v, m.n, m.errors)
  end
  if r.scored > 0 then
    lines[#lines + 1] = string.format("verifier: %d scored, mean %.3f; feedback posted %d%s",
      r.scored, r.mean_score, r.feedback_posted, r.feedback_failed > 0 and
        (", " .. r.feedback_failed .. " refused") or "")
  end
  return table.concat(lines, "\n")
end

return M
