-- flare.repl.commands: the REPL's :commands.
--
--   commands.run(line, {color=}) -> text to print (or nil), "quit" (or nil)
--   commands.reload(name) -> the fresh module and how many globals were rebound
local M = {}

function M.reload(name)
  local old = package.loaded[name]
  package.loaded[name] = nil
  local ok, fresh = pcall(require, name)
  if not ok then
    package.loaded[name] = old
    error(fresh, 0)
  end
  local rebound = 0
  if old ~= nil and type(old) == "table" then
    for k, v in pairs(_G) do
      if rawequal(v, old) then
        rawset(_G, k, fresh)
        rebound = rebound + 1
      end
    end
  end
  return fresh, rebound
end

local handlers = {}

handlers.help = function(arg, opts)
  return require("flare.repl.help").text(arg, opts)
end
handlers.h = handlers.help

handlers.reload = function(arg)
  if arg == nil or
    arg == "" then error("usage: :reload NAME (a module name, e.g. :reload mylab.workflow)", 0) end
  local _, rebound = M.reload(arg)
  local note = rebound > 0 and (" (" .. rebound .. (rebound == 1 and " global" or " globals") ..
    " rebound)") or ""
  return "reloaded " .. arg .. note
end

handlers.quit = function() return nil, "quit" end
handlers.q = handlers.quit
handlers.exit = handlers.quit

function M.run(line, opts)
  local name, arg = line:match("^%s*:(%S*)%s*(.-)%s*$")
  local handler = name and handlers[name]
  if not handler then
    error("unknown command ':" .. tostring(name) ..
      "' (commands: :help [word], :reload NAME, :quit)", 0)
  end
  return handler(arg, opts or {})
end

return M
