-- flare.fireworks.progress: status of a long wait on stderr.
--   local p = progress.new("deployment my-dep", {quiet = false})
--   p:update("CREATING")        -- terminal: one live line "\r<label>  12.3s  CREATING";
--                               -- otherwise a timestamped line each time the status changes
--   p:finish("READY")
local M = {}
M.__index = M

local is_tty
local function stderr_is_tty()
  if is_tty == nil then is_tty = flare.fs.isatty(2) end
  return is_tty
end

function M.new(label, opts)
  opts = opts or {}
  return setmetatable({label = label, quiet = opts.quiet and true or false, started = flare.clock(),
    last = nil, live = false}, M)
end

function M:elapsed()
  return flare.clock() - self.started
end

function M:update(status)
  if self.quiet then return end
  status = tostring(status)
  if stderr_is_tty() then
    io.stderr:write(string.format("\r\27[K%s  %5.1fs  %s", self.label, self:elapsed(), status))
    io.stderr:flush()
    self.live = true
  elseif status ~= self.last then
    io.stderr:write(string.format("%s %s: %s (%.1fs)\n", os.date("!%Y-%m-%dT%H:%M:%SZ"),
      self.label, status,
      self:elapsed()))
    io.stderr:flush()
  end
  self.last = status
end

function M:finish(status)
  if self.quiet then return end
  if status then
    -- The live line shows the final elapsed time; a log gets the status only if it is new.
    if self.live then self.last = nil end
    self:update(status)
  end
  if self.live then
    io.stderr:write("\n")
    io.stderr:flush()
    self.live = false
  end
end

return M
