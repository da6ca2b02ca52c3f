-- What the kernel says about a process (this one by default, or a pid): open file
-- descriptors and memory, from /proc. Used by the load checks to show that a run
-- leaks no descriptor and that memory stays bounded.
local fs = require("flare.fs")

local M = {}

local function proc_dir(pid) return "/proc/" .. (pid and tostring(pid) or "self") end

-- Number of open descriptors (the listing's own descriptor is not counted for self).
function M.fd_count(pid)
  local names = fs.list_dir(proc_dir(pid) .. "/fd")
  return pid and #names or #names - 1
end

-- {hwm_mb = peak RSS, rss_mb = current RSS, threads = N} from /proc/<pid>/status.
function M.memory(pid)
  local text = assert(fs.read_file(proc_dir(pid) .. "/status"))
  local function kb(field)
    return tonumber(text:match(field .. ":%s*(%d+) kB") or "0")
  end
  return {hwm_mb = kb("VmHWM") / 1024, rss_mb = kb("VmRSS") / 1024,
    threads = tonumber(text:match("Threads:%s*(%d+)") or "0")}
end

-- The descriptors' targets ("socket:[123]", "/path", ...), sorted: what a leak is made of.
function M.fd_targets(pid)
  local dir = proc_dir(pid or fs.getpid()) .. "/fd"
  local out = {}
  for _, name in ipairs(fs.list_dir(dir)) do
    local p = io.popen("readlink " .. dir .. "/" .. name .. " 2>/dev/null")
    local target = p:read("*l")
    p:close()
    if target then out[#out + 1] = name .. " -> " .. target end
  end
  table.sort(out)
  return out
end

-- A request to `probe` (an in-process emulator that outlives the servers under test) runs the
-- client's event loop, which is when the client sees, and closes, its idle keep-alive
-- connections to a server that stopped. Repeats until the count stops changing.
function M.settle_client(probe)
  local last = -1
  for _ = 1, 20 do
    flare.http.request{url = probe:base_url() .. "/v1/accounts",
      headers = {Authorization = "Bearer " .. probe:api_key()}}
    local now = M.fd_count()
    if now == last then return now end
    last = now
  end
  return last
end

return M
