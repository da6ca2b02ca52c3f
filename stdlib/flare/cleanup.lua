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
--
-- FLARE_CLEANUP_LOG=path appends one line per event to path, for audits of
-- interrupted runs (tests/reliability): "defer N name", "cancel N name",
-- "run N name", "done N ok|failed|interrupted" (N numbers the cleanups of the process).
local args = require("flare.args")

local M = {}

local stack = {}
local log_path = os.getenv("FLARE_CLEANUP_LOG")
if log_path == "" then log_path = nil end
local next_id = 0

local function log(event, h, detail)
  if not log_path then return end
  local f = io.open(log_path, "a")
  if not f then return end
  f:write(event, " ", h.id, " ", detail or (h.name and tostring(h.name)) or "function", "\n")
  f:close()
end

local Handle = {}
Handle.__index = Handle

function Handle:cancel()
  if not self.cancelled and not self.started then log("cancel", self) end
  self.cancelled = true
end

function M.defer(fn, name)
  if type(fn) ~= "function" and not (getmetatable(fn) or {}).__call then
    args.invalid("flare.cleanup.defer", "argument 'fn' must be a function, got " .. type(fn))
  end
  next_id = next_id + 1
  local h = setmetatable({fn = fn, name = name, id = next_id}, Handle)
  stack[#stack + 1] = h
  log("defer", h)
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
          log("run", h)
          local ok, err = pcall(h.fn, reason)
          log("done", h, ok and "ok" or
            (type(err) == "table" and err.code == "interrupted" and "interrupted" or "failed"))
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
