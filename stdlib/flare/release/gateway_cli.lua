-- flare.release.gateway_cli: `flare gateway FAMILY [--port P] [--registry PATH] [--dir DIR]`;
-- runs until interrupted (Ctrl-C or SIGTERM stop nginx gracefully).
local errors = require("flare.release.errors")

local USAGE = [[
usage: flare gateway FAMILY [--port P] [--registry PATH] [--dir DIR]
       [--alert-error-rate PCT] [--alert-p95-ms MS] [--alert-min-feedback X]
       [--alert-window SECONDS] [--alert-min-requests N]

Serves FAMILY's production version (and its canary's share, sticky per x-user-id; a shadow
gets a mirrored share whose answers are only logged) on 127.0.0.1:P through nginx,
reloading when `flare release promote|canary|shadow|rollback` changes the route in the
registry, and logging every request to the registry's requests table (answers carry
x-flare-version and x-flare-request-id, for `flare release feedback`).
--port 0 (the default) picks a free port; the line "gateway FAMILY on URL" names it.
DIR (default: gateway/FAMILY beside the registry) holds nginx.conf and the access log.
Alerts (over the last --alert-window seconds, 30, once --alert-min-requests, 20, were
logged): a fired alert on the canary ends it; on a production version promoted less than
5 minutes ago it rolls back to the previous one; either with the alert as the reason.
See docs/release.md.]]

local function usage(message)
  flare.error{code = "usage", message = message .. "\n" .. USAGE}
end

local alert_flags = require("flare.release.alerts").flags

return function(args)
  local o = {}
  local i = 1
  while i <= #args do
    local a = args[i]
    local key, value = a:match("^%-%-([%w-]+)=(.*)$")
    if not key and a:sub(1, 2) == "--" then
      key = a:sub(3)
      if key ~= "help" then
        i = i + 1
        value = args[i]
        if value == nil then usage("--" .. key .. " needs a value") end
      end
    end
    if a == "-h" or key == "help" then
      io.stdout:write(USAGE, "\n")
      return 0
    elseif key == "port" then
      o.port = tonumber(value)
      if not o.port then usage("--port expects a number, got '" .. value .. "'") end
    elseif key == "registry" or key == "dir" then
      o[key] = value
    elseif alert_flags[key] then
      o.alerts = o.alerts or {}
      o.alerts[alert_flags[key]] = tonumber(value)
      if not o.alerts[alert_flags[key]] then
        usage("--" .. key .. " expects a number, got '" .. value .. "'")
      end
    elseif key then
      local names = {"port", "registry", "dir"}
      for k in pairs(alert_flags) do names[#names + 1] = k end
      usage("unknown option --" .. key .. errors.suggest(key, names))
    elseif not o.family then
      o.family = a
    else
      usage("unexpected argument '" .. a .. "'")
    end
    i = i + 1
  end
  if not o.family then usage("a FAMILY is required") end
  local gw = require("flare.release.gateway").start(o)
  io.stdout:write("gateway ", o.family, " on ", gw.url, " (", gw.dir, ")\n")
  io.stdout:flush()
  gw:serve()
  return 0
end
