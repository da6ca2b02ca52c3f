-- flare.release.traffic_cli: `flare traffic replay PROMPTS.jsonl --rate R --duration D ...`.
local json = require("flare.json")
local errors = require("flare.release.errors")

local USAGE = [[
usage: flare traffic replay PROMPTS.jsonl --rate R --duration D
         (--url URL | --family FAMILY [--registry PATH]) [--verifier NAME] [--users N]
         [--max-tokens N] [--model NAME] [--json]

Plays the prompts (JSONL: a string, or an object with "prompt" or "messages", optionally
"user", "task" and the task's fields such as "answer") in turn, open loop at R requests per
second for D (30s, 500ms, 2m) against the gateway at URL (--family: the running
`flare gateway` of FAMILY, from the registry). Users are each line's "user", else N ids in
turn (default 100), sent as x-user-id. With a verifier (a flare.tasks task: addition,
reverse, sort, countdown, vowels; or each line's "task") every answer is scored and the
score posted to the gateway as the request's feedback. The Authorization header is
"Bearer $FIREWORKS_API_KEY" when that is set. Prints the achieved rate, the status counts,
latency p50/p95/p99, answers per version and the mean score.
See docs/release.md.]]

local function usage(message)
  flare.error{code = "usage", message = message .. "\n" .. USAGE}
end

local function gateway_url(family, registry)
  local store = require("flare.release.store")
  local g = store.open(registry):query("SELECT port, pid FROM gateways WHERE family = ?",
    {family})[1]
  if not g or not require("flare.fs").exists("/proc/" .. tostring(g.pid)) then
    errors.refused("no running gateway of family " .. family .. " (flare gateway " .. family ..
      ")")
  end
  return "http://127.0.0.1:" .. g.port
end

local function replay(args)
  local pos, f = require("flare.release.cli_args").parse(args, {rate = "value",
    duration = "value", url = "value", family = "value", registry = "value", verifier = "value",
    users = "value", ["max-tokens"] = "value", model = "value", json = "bool"}, "replay", usage)
  if #pos ~= 1 then usage("replay: one PROMPTS.jsonl is required") end
  local rate = tonumber(f.rate)
  if not rate then usage("replay: --rate R (requests per second) is required") end
  if not f.duration then usage("replay: --duration D is required") end
  if (not f.url) == (not f.family) then usage("replay: one of --url or --family is required") end
  local duration = require("flare.release.rollout").parse_duration(f.duration,
    "flare traffic replay --duration")
  local traffic = require("flare.release.traffic")
  local key = os.getenv("FIREWORKS_API_KEY")
  local r = traffic.replay{prompts = pos[1], rate = rate, duration_s = duration,
    url = f.url or gateway_url(f.family, f.registry), verifier = f.verifier,
    users = tonumber(f.users), max_tokens = tonumber(f["max-tokens"]), model = f.model or f.family,
    api_key = key ~= "" and key or nil}
  if f.json then
    io.stdout:write(json.encode(r, {pretty = true, sort_keys = true}), "\n")
  else
    io.stdout:write(traffic.summary(r, rate), "\n")
  end
  return 0
end

return function(args)
  local command = args[1]
  if command == nil then usage("a command is required") end
  if command == "-h" or command == "--help" or command == "help" then
    io.stdout:write(USAGE, "\n")
    return 0
  end
  if command ~= "replay" then
    usage("unknown command '" .. command .. "'" .. errors.suggest(command, {"replay"}))
  end
  return replay({unpack(args, 2)})
end
