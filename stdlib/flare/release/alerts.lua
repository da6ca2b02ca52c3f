-- flare.release.alerts: alert checks on a version's live metrics (flare.release.gateway.metrics).
--
--   alerts.spec(opts) -> spec   opts: max_error_rate_pct, max_p95_ms, min_feedback,
--       min_requests = 20 (fewer requests than this fire nothing), window_s = 30,
--       rollout_s = 300 (how long after a production change a fired alert rolls it back)
--   alerts.fired(metrics, spec) -> list of messages ("error rate 23.0% > 5% (n=120)"), empty
--       when every threshold holds
local args = require("flare.args")
local errors = require("flare.release.errors")

local M = {}
local WHO = "flare.release.alerts"

M.options_spec = {max_error_rate_pct = "number", max_p95_ms = "number", min_feedback = "number",
  min_requests = "number", window_s = "number", rollout_s = "number"}

-- The command-line flags of the thresholds (flare gateway, flare release rollout).
M.flags = {["alert-error-rate"] = "max_error_rate_pct", ["alert-p95-ms"] = "max_p95_ms",
  ["alert-min-feedback"] = "min_feedback", ["alert-window"] = "window_s",
  ["alert-min-requests"] = "min_requests"}

function M.spec(opts)
  opts = args.options(opts, M.options_spec, WHO)
  if opts.max_error_rate_pct and (opts.max_error_rate_pct < 0 or opts.max_error_rate_pct > 100) then
    errors.invalid(WHO, "option 'max_error_rate_pct' must be from 0 to 100, got " ..
      opts.max_error_rate_pct)
  end
  for _, k in ipairs({"max_p95_ms", "min_requests", "window_s", "rollout_s"}) do
    if opts[k] and opts[k] <= 0 then
      errors.invalid(WHO, "option '" .. k .. "' must be above 0, got " .. opts[k])
    end
  end
  if not (opts.max_error_rate_pct or opts.max_p95_ms or opts.min_feedback) then return nil end
  return {max_error_rate_pct = opts.max_error_rate_pct, max_p95_ms = opts.max_p95_ms,
    min_feedback = opts.min_feedback, min_requests = opts.min_requests or 20,
    window_s = opts.window_s or 30, rollout_s = opts.rollout_s or 300}
end

function M.fired(m, spec)
  local out = {}
  if not m or m.n < spec.min_requests then return out end
  if spec.max_error_rate_pct and 100 * m.error_rate > spec.max_error_rate_pct then
    out[#out + 1] = string.format("error rate %.1f%% > %g%% (n=%d)", 100 * m.error_rate,
      spec.max_error_rate_pct, m.n)
  end
  if spec.max_p95_ms and m.p95_ms > spec.max_p95_ms then
    out[#out + 1] = string.format("p95 latency %.0f ms > %g ms (n=%d)", m.p95_ms, spec.max_p95_ms,
      m.n)
  end
  if spec.min_feedback and m.mean_feedback and m.mean_feedback < spec.min_feedback then
    out[#out + 1] = string.format("mean feedback %.3f < %g", m.mean_feedback, spec.min_feedback)
  end
  return out
end

return M
