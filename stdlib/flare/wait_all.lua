-- flare.wait_all(handles): waits for every handle or future (flare.http.submit,
-- sampler:submit, trainer *_async, ...) and returns their results in order.
-- One event loop drives every transfer, so waiting on them one after another
-- lets all of them progress together.
local args = require("flare.args")

return args.wrap(function(handles)
  local results = {}
  for i = 1, #handles do
    local h = handles[i]
    if type(h) ~= "table" and type(h) ~= "userdata" then
      args.invalid("flare.wait_all", "handles[" .. i .. "] is a " .. type(h) .. ", not a handle")
    end
    results[i] = h:wait()
  end
  return results
end, "flare.wait_all", {"handles:table"})
