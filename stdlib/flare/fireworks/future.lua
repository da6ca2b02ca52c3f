-- flare.fireworks.future: a pending result. f:wait([timeout_s]) pumps the one
-- event loop (everything in flight progresses) and returns the result or raises;
-- f:done() says whether it finished; f:cancel() abandons it.
local M = {}
M.__index = M

function M.new(native_future, transform)
  return setmetatable({native = native_future, transform = transform}, M)
end

function M:wait(timeout_s)
  if not self.finished then
    local r = self.native:wait(timeout_s)
    self.result = self.transform and self.transform(r) or r
    self.finished = true
  end
  return self.result
end

function M:done()
  return self.finished or self.native:done()
end

function M:cancel()
  self.native:cancel()
end

function M:__tostring()
  return "future(" .. (self:done() and "done" or "pending") .. ")"
end

-- Waits for every future of the list; returns their results in order
-- (flare.wait_all, under the name the fireworks modules have used).
M.wait_all = require("flare.wait_all")

return M
