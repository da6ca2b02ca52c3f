-- flare.cleanup: cleanups that always run, last-in first-out.
--
--   local h = cleanup.defer(fn, name)   -- fn(reason) runs at the end of the script
--   h:cancel()                          -- drop it (e.g. the resource was released by hand)
--   cleanup.run_all(reason)             -- runs every pending cleanup once; returns the number
--                                       -- that failed. The host calls it after the script ends
--                                       -- with reason "exit" | "error" | "interrupt".
--   cleanup.pending()                   -- how many cleanups are waiting
--
-- An error in one cleanup is reported on stderr and does not skip the others;
-- a Ctrl-C during a cleanup interrupts that cleanup only.
local args = require("flare.args")

local M = {}

local stack = {}

local Handle = {}
Handle.__index = Handle

function Handle:cancel()
  self.cancelled = true
end

function M.defer(fn, name)
  if type(fn) ~= "function" and not (getmetatable(fn) or {}).__call then
    args.invalid("flare.cleanup.defer", "argument 'fn' must be a function, got " .. type(fn))
  end
  local h = setmetatable({fn = fn, name = name}, Handle)
  stack[#stack + 1] = h
  return h
end

function M.pending()
  local n = 0
  for _, h in ipairs(stack) do
    if not h.cancelled then n = n + 1 end
  end
  return n
end

local function describe(err)
  if type(err) == "table" then
    local mt = getmetatable(err)
    if mt and mt.__tostring then return tostring(err) end
    return tostring(err.code or "error") .. ": " .. tostring(err.message or "")
  end
  return tostring(err)
end

local function report(h, err)
  local label = h.name and ("'" .. h.name .. "'") or "function"
  local what = type(err) == "table" and err.code == "interrupted" and "interrupted" or "failed"
  io.stderr:write("flare: cleanup ", label, " ", what, ": ", describe(err), "\n")
  io.stderr:flush()
end

-- An interrupt may land between two cleanups, outside their pcall: the outer
-- loop then resumes with the entry on top, unless it had already started.
function M.run_all(reason)
  reason = reason or "exit"
  local failed = 0
  while #stack > 0 do
    pcall(function()
      while #stack > 0 do
        local h = stack[#stack]
        if h.started or h.cancelled then
          stack[#stack] = nil
        else
          h.started = true
          local ok, err = pcall(h.fn, reason)
          -- Popped on the next turn: fn may have deferred more cleanups on top of it.
          if not ok then
            failed = failed + 1
            report(h, err)
          end
        end
      end
    end)
  end
  return failed
end

return args.checked(M, "flare.cleanup", {
  defer = {"fn:function|table", "name:nil|string"},
  run_all = {"reason:nil|string"},
})
