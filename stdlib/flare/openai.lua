-- flare.openai: sampling from any OpenAI-compatible server (vLLM, SGLang, llama.cpp's
-- server, flare serve's /inference/v1) with the sampler's calls and result shape.
--   local oa = flare.openai.connect{base_url = "http://127.0.0.1:8000/v1",
--       api_key = $OPENAI_API_KEY or none}
--   local s = oa:sampler{model = "...", concurrency = 32, timeout_s = 600, max_attempts = 5,
--       backoff_initial_s = 0.5, backoff_max_s = 30, on_error = "raise", extra_body = nil}
--   (or flare.openai.sampler{base_url =, api_key =, model =, ...}, or
--    fw:sampler{backend = "openai", model =, base_url = <fw's gateway>/inference/v1})
--   s:sample{prompts = {...}, n = 1, max_tokens = 16, temperature = 1.0, top_p = 1.0,
--       top_k = nil, stop = nil, seed = nil, logprobs = false, top_logprobs = 0}
--     -> groups[i][j] = {text, tokens, logprobs, sampling_logprobs, finish_reason,
--        snapshot_identity, prompt_tokens, top_logprobs?}
--   s:submit{...} -> future (f:wait()).
-- A prompt is a string or a list of token ids (POST /completions), or a list of chat
-- messages {{role =, content =}, ...} (POST /chat/completions: the server applies its
-- chat template; flare serve's is flare.chat's). Each sample is its own n = 1 request
-- (sample j gets seed + j - 1 when seed is set), so servers without n work too.
-- Token ids come from the answer when the server gives them (flare's and Fireworks'
-- raw_output, flare's logprobs token_id, vLLM's "token_id:N" tokens); reading c.tokens
-- of a completion without them raises a clear error. Sampling only: the connection's
-- deployments, trainer and hotload raise, naming what the server cannot do.
local options = require("flare.fireworks.options")
local future = require("flare.fireworks.future")
local http = require("flare.http")
local json = require("flare.json")

local M = {}

local connect_spec = {base_url = "string", api_key = "string", timeout_s = "number"}
local sampler_spec = {
  base_url = "string", api_key = "string", model = "string", concurrency = "integer",
  timeout_s = "number", max_attempts = "integer", backoff_initial_s = "number",
  backoff_max_s = "number", on_error = "string", extra_body = "table", backend = "string",
}
local sample_spec = {
  prompts = "table", n = "integer", max_tokens = "integer", temperature = "number",
  top_p = "number", top_k = "integer", stop = "string|table", seed = "integer",
  logprobs = "boolean", top_logprobs = "integer", on_error = "string",
}
-- Arguments of the Fireworks sampler that an OpenAI-compatible server has no field for.
local unsupported_sample = {
  echo = "echo (prompt logprobs) is a Fireworks completion field",
  prompt_cache_max_len = "prompt_cache_max_len is a Fireworks completion field",
}

local function raise(code, message) options.raise(code, "openai backend: " .. message) end

-- The connection: sampling only ---------------------------------------------------

local Conn = {}
Conn.__index = Conn

local function cannot(conn, what)
  raise("unsupported", what .. " is not available: " .. conn.base_url ..
    " is an OpenAI-compatible server (sampling only); " .. what ..
    " needs a Fireworks connection (flare.connect())")
end

-- Any call on conn.deployments raises, naming the call.
local function no_deployments(conn)
  return setmetatable({}, {__index = function(_, name)
    return function() cannot(conn, "deployments:" .. tostring(name)) end
  end})
end

function M.connect(opts)
  opts = options.check(opts, connect_spec, "flare.openai.connect")
  if not opts.base_url then raise("invalid_argument",
    "base_url is required (the server's OpenAI root, e.g. http://127.0.0.1:8000/v1)") end
  local env_key = os.getenv("OPENAI_API_KEY")
  if env_key == "" then env_key = nil end
  local conn = setmetatable({base_url = opts.base_url:gsub("/+$", ""),
    api_key = opts.api_key or env_key,
    timeout_s = opts.timeout_s, backend = "openai"}, Conn)
  conn.deployments = no_deployments(conn)
  return conn
end

function Conn:sampler(opts) return M.sampler(opts, self) end
function Conn:trainer() cannot(self, "a trainer") end
function Conn:hotload() cannot(self, "hotload") end
function Conn:__tostring() return "flare.openai.connect(" .. self.base_url .. ")" end

function Conn:models()
  local r = self:_request("GET", "/models")
  return r.data
end

function Conn:_headers()
  local h = {["Content-Type"] = "application/json"}
  if self.api_key then h.Authorization = "Bearer " .. self.api_key end
  return h
end

function Conn:_submit(method, path, body, timeout_s)
  return http.submit{method = method, url = self.base_url .. path, headers = self:_headers(),
    body = body and json.encode(body) or nil, timeout_s = timeout_s or self.timeout_s or 600}
end

local function error_of(r, what)
  local ok, body = pcall(json.decode, r.body)
  local e = ok and type(body) == "table" and type(body.error) == "table" and body.error or {}
  local message = type(e.message) == "string" and e.message or tostring(r.body):sub(1, 300)
  local code = e.code
  if code == nil or code == json.null then code = e.type end
  if code == nil or code == json.null then code = "http_" .. r.status end
  return {code = tostring(code),
    message = "openai backend: " .. what .. ": HTTP " .. r.status .. ": " .. message,
    status = r.status, retryable = r.status == 429 or r.status >= 500,
    request_id = r.headers and r.headers["x-request-id"]}
end

function Conn:_request(method, path, body)
  local r = self:_submit(method, path, body):wait()
  if r.status ~= 200 then flare.error(error_of(r, method .. " " .. path)) end
  return json.decode(r.body)
end

-- The sampler ---------------------------------------------------------------------

local Sampler = {}
Sampler.__index = Sampler

function M.sampler(opts, conn)
  opts = options.check(opts, sampler_spec, "flare.openai.sampler")
  if opts.backend and opts.backend ~= "openai" then
    raise("invalid_argument", "backend must be \"openai\", got \"" .. opts.backend .. "\"")
  end
  conn = conn or M.connect{base_url = opts.base_url, api_key = opts.api_key}
  if not opts.model then raise("invalid_argument", "sampler: model = \"...\" is required") end
  local on_error = opts.on_error or "raise"
  if on_error ~= "raise" and on_error ~= "return" then
    raise("invalid_argument", "sampler: on_error must be \"raise\" or \"return\"")
  end
  return setmetatable({conn = conn, model = opts.model, on_error = on_error,
    concurrency = opts.concurrency or 32, timeout_s = opts.timeout_s or 600,
    max_attempts = opts.max_attempts or 5, backoff_initial_s = opts.backoff_initial_s or 0.5,
    backoff_max_s = opts.backoff_max_s or 30, extra_body = opts.extra_body,
    requests = 0, retries = 0}, Sampler)
end

-- fw:sampler{backend = "openai", ...}: the same server through its OpenAI surface.
function M._from_fw(fw, opts)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  if o.deployment then
    raise("invalid_argument", "sampler: give model = \"...\" (deployment = is a Fireworks " ..
      "DeploymentInfo; use its inference_model)")
  end
  if not o.base_url then
    o.base_url = fw.base_url:gsub("/+$", "") .. "/inference/v1"
    o.api_key = o.api_key or fw.api_key
  end
  return M.sampler(o)
end

function Sampler:__tostring() return "OpenAISampler(" .. self.model .. " at " ..
  self.conn.base_url .. ")" end
function Sampler:stats() return {requests = self.requests, retries = self.retries} end
function Sampler:hotload() cannot(self.conn, "hotload") end
function Sampler:step_completed() return self:stats() end

local function is_messages(p)
  return type(p) == "table" and type(p[1]) == "table" and p[1].role ~= nil
end

local function check_params(p)
  if type(p) ~= "table" then raise("invalid_argument", "sample: expected a table of arguments") end
  for k, why in pairs(unsupported_sample) do
    if p[k] ~= nil and p[k] ~= false then
      raise("unsupported", "sample: " .. k .. " is not supported: " .. why)
    end
  end
  options.check(p, sample_spec, "sampler:sample")
  if type(p.prompts) ~= "table" then raise("invalid_argument",
    "sample: 'prompts' (a list) is required") end
  if p.n and p.n < 1 then raise("invalid_argument", "sample: n must be >= 1, got " .. p.n) end
  for i, prompt in ipairs(p.prompts) do
    if type(prompt) ~= "string" and type(prompt) ~= "table" then
      raise("invalid_argument", "sample: prompts[" .. i .. "] must be a string, a list of " ..
        "token ids or a list of chat messages, got " .. type(prompt))
    end
  end
end

function Sampler:_body(prompt, p, j)
  local body = {model = self.model, n = 1, max_tokens = p.max_tokens or 16,
    temperature = p.temperature, top_p = p.top_p, stop = p.stop,
    seed = p.seed and (p.seed + j - 1) or nil}
  if p.top_k and p.top_k > 0 then body.top_k = p.top_k end
  local path = "/completions"
  if is_messages(prompt) then
    path = "/chat/completions"
    body.messages = prompt
    if p.logprobs then
      body.logprobs = true
      body.top_logprobs = p.top_logprobs or 0
    end
  else
    body.prompt = prompt
    if p.logprobs then body.logprobs = p.top_logprobs or 0 end  -- the legacy count form
  end
  for k, v in pairs(self.extra_body or {}) do body[k] = v end
  return path, body
end

local TOKEN_ID = "^token_id:(%d+)$"

-- Token ids and logprobs of a choice, from whichever form the server answered in.
local function read_logprobs(choice)
  local lp = choice.logprobs
  if type(lp) ~= "table" then return nil end
  local out = {logprobs = {}, sampling = {}, ids = {}, top = {}}
  if type(lp.content) == "table" then  -- chat shape, and flare's completions
    for k, t in ipairs(lp.content) do
      out.logprobs[k] = t.logprob
      out.sampling[k] = type(t.sampling_logprob) == "number" and t.sampling_logprob or nil
      local id = type(t.token_id) == "number" and t.token_id or
        tonumber(tostring(t.token):match(TOKEN_ID))
      out.ids[k] = id
      local top = {}
      for _, a in ipairs(t.top_logprobs or {}) do
        top[#top + 1] = {token = a.token, logprob = a.logprob}
      end
      out.top[k] = top
    end
  elseif type(lp.token_logprobs) == "table" then  -- the legacy completions shape
    for k, v in ipairs(lp.token_logprobs) do
      out.logprobs[k] = v
      out.ids[k] = tonumber(tostring((lp.tokens or {})[k]):match(TOKEN_ID))
      local top = {}
      for tok, v2 in pairs((lp.top_logprobs or {})[k] or {}) do
        top[#top + 1] = {token = tok, logprob = v2}
      end
      table.sort(top, function(a, b) return a.logprob > b.logprob end)
      out.top[k] = top
    end
  end
  return out
end

M._read_logprobs = read_logprobs  -- for the spec: the answer forms of other servers

local function complete_list(list, n)
  if #list ~= n then return nil end
  for k = 1, n do if list[k] == nil then return nil end end
  return list
end

local server_of = setmetatable({}, {__mode = "k"})  -- completion -> base_url, for errors
local Completion = {}
Completion.__index = function(c, k)
  if k == "tokens" then
    raise("unsupported", "this completion has no token ids: the server at " ..
      server_of[c] .. " returned none (flare serve and Fireworks give them with " ..
      "raw_output = true; vLLM with extra_body = {return_tokens_as_token_ids = true, " ..
      "logprobs = 0}); recipes that train on the samples need them")
  end
  return nil
end

function Sampler:_completion(answer, prompt, p, headers)
  local choice = answer.choices and answer.choices[1]
  if type(choice) ~= "table" then error("the answer has no choices") end
  local text = choice.text
  if choice.message then text = choice.message.content end
  if text == json.null then text = "" end
  local c = {text = text or "", finish_reason = choice.finish_reason,
    snapshot_identity = headers["fireworks-snapshot-identity"] or answer.model}
  server_of[c] = self.conn.base_url
  local raw = type(choice.raw_output) == "table" and choice.raw_output or nil
  local lp = read_logprobs(choice)
  if lp then
    c.logprobs = lp.logprobs
    local n = #lp.logprobs
    c.sampling_logprobs = complete_list(lp.sampling, n)
    local t, tp, tk = p.temperature or 1, p.top_p or 1, p.top_k or 0
    if not c.sampling_logprobs and t == 1 and tp == 1 and tk == 0 then
      c.sampling_logprobs = lp.logprobs  -- sampled from the model's distribution itself
    end
    if p.top_logprobs and p.top_logprobs > 0 then c.top_logprobs = lp.top end
    c.tokens = complete_list(lp.ids, n)
  elseif p.logprobs then
    raise("unsupported", "sample: logprobs = true but the server at " .. self.conn.base_url ..
      " returned no logprobs")
  end
  if raw and type(raw.completion_token_ids) == "table" then c.tokens = raw.completion_token_ids end
  if raw and type(raw.prompt_token_ids) == "table" then
    c.prompt_tokens = raw.prompt_token_ids
  elseif type(prompt) == "table" and not is_messages(prompt) then
    c.prompt_tokens = prompt
  end
  return setmetatable(c, Completion)
end

-- Runs every request with at most `concurrency` in flight; retries 429, 5xx and
-- transport errors with jittered exponential backoff.
function Sampler:_run(p)
  local n = p.n or 1
  local on_error = p.on_error or self.on_error
  local jobs = {}
  for i, prompt in ipairs(p.prompts) do
    for j = 1, n do jobs[#jobs + 1] = {i = i, j = j, prompt = prompt, attempt = 0} end
  end
  local groups = {}
  for i = 1, #p.prompts do groups[i] = {} end
  local queue, next_job, in_flight = {}, 1, 0
  local function start(job)
    job.attempt = job.attempt + 1
    local path, body = self:_body(job.prompt, p, job.j)
    job.path = path
    job.handle = self.conn:_submit("POST", path, body, self.timeout_s)
    self.requests = self.requests + 1
    in_flight = in_flight + 1
    queue[#queue + 1] = job
  end
  local function fill()
    while in_flight < self.concurrency and next_job <= #jobs do
      start(jobs[next_job])
      next_job = next_job + 1
    end
  end
  fill()
  local head = 1
  while head <= #queue do
    local job = queue[head]
    head = head + 1
    local ok, r = pcall(job.handle.wait, job.handle)
    in_flight = in_flight - 1
    local err
    if not ok then
      err = type(r) == "table" and r or
        {code = "transport", message = tostring(r), retryable = true}
    elseif r.status ~= 200 then
      err = error_of(r, "POST " .. job.path)
    else
      local decoded_ok, answer = pcall(json.decode, r.body)
      if not decoded_ok then
        err = {code = "bad_response", message = "openai backend: POST " .. job.path ..
          ": the answer is not JSON: " .. tostring(answer)}
      else
        groups[job.i][job.j] = self:_completion(answer, job.prompt, p, r.headers or {})
      end
    end
    if err then
      if err.retryable and job.attempt < self.max_attempts then
        self.retries = self.retries + 1
        local delay = math.min(self.backoff_max_s, self.backoff_initial_s * 2 ^ (job.attempt - 1))
        flare.sleep(delay * (0.5 + math.random()))
        start(job)
      elseif on_error == "return" then
        groups[job.i][job.j] = {error = err}
      else
        for k = head, #queue do pcall(queue[k].handle.wait, queue[k].handle) end
        flare.error(err)
      end
    end
    fill()
  end
  return groups
end

function Sampler:submit(p)
  check_params(p)
  local done, result = false, nil
  return future.new({
    wait = function()
      if not done then
        result = self:_run(p)
        done = true
      end
      return result
    end,
    done = function() return done end,
    cancel = function() end,
  })
end

function Sampler:sample(p)
  return self:submit(p):wait()
end

return M
