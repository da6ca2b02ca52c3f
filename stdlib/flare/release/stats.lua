-- flare.release.stats: the statistics of the promotion gates, deterministic for a seed.
--
--   stats.mean(xs)
--   stats.percentile(sorted, p)     linear interpolation between closest ranks (numpy's
--                                   default): h = (n - 1) p + 1, x[floor h] + frac(h) * step
--   stats.paired_bootstrap(base, cand, {resamples = 2000, seed = 0, confidence = 0.95})
--     -> {diff =, lo =, hi =, resamples =, seed =}: diff = mean(cand - base); each resample
--     draws n pair indices with flare.tasks.rng(seed) (rng:int(1, n), one stream for all
--     resamples) and takes the mean difference; lo and hi are the (1 - confidence)/2 and
--     (1 + confidence)/2 percentiles of the resampled means
--   stats.sign_test(base, cand) -> {better =, worse =, ties =, p =}: exact two-sided
--     binomial test on the pairs that differ, p = min(1, 2 P(X <= min(better, worse)))
local rng = require("flare.tasks").rng

local M = {}

function M.mean(xs)
  if #xs == 0 then return 0 end
  local s = 0
  for _, x in ipairs(xs) do s = s + x end
  return s / #xs
end

function M.percentile(sorted, p)
  local n = #sorted
  if n == 0 then return nil end
  local h = (n - 1) * p + 1
  local lo = math.floor(h)
  if lo >= n then return sorted[n] end
  return sorted[lo] + (h - lo) * (sorted[lo + 1] - sorted[lo])
end

function M.paired_bootstrap(base, cand, opts)
  opts = opts or {}
  local n = #base
  if n ~= #cand then error("stats.paired_bootstrap: " .. n .. " baseline and " .. #cand ..
    " candidate values (pairs must match)", 2) end
  local resamples = opts.resamples or 2000
  local seed = opts.seed or 0
  local confidence = opts.confidence or 0.95
  local d = {}
  for i = 1, n do d[i] = cand[i] - base[i] end
  local diff = M.mean(d)
  if n == 0 then return {diff = 0, lo = 0, hi = 0, resamples = 0, seed = seed, n = 0} end
  local r = rng(seed)
  local means = {}
  for b = 1, resamples do
    local s = 0
    for _ = 1, n do s = s + d[r:int(1, n)] end
    means[b] = s / n
  end
  table.sort(means)
  local alpha = (1 - confidence) / 2
  return {diff = diff, lo = M.percentile(means, alpha), hi = M.percentile(means, 1 - alpha),
    resamples = resamples, seed = seed, confidence = confidence, n = n}
end

-- C(n, k) as a double, exact for the n of an evaluation suite.
local function choose(n, k)
  local c = 1
  for i = 1, k do c = c * (n - k + i) / i end
  return c
end

function M.sign_test(base, cand)
  local better, worse, ties = 0, 0, 0
  for i = 1, #base do
    if cand[i] > base[i] then better = better + 1
    elseif cand[i] < base[i] then worse = worse + 1
    else ties = ties + 1 end
  end
  local n = better + worse
  local tail = 0
  for i = 0, math.min(better, worse) do tail = tail + choose(n, i) end
  local p = n == 0 and 1 or math.min(1, 2 * tail / 2 ^ n)
  return {better = better, worse = worse, ties = ties, p = p}
end

return M
