-- flare.release: shipping trained models. A registry of versions (SQLite), stage changes
-- with their reasons, promotion gates on a frozen evaluation suite, drift and
-- reward-collapse checks. docs/release.md describes each part.
--
--   flare.release.register{family =, base_model =, snapshot = | adapter =, weights =,
--     run = run, parent =, evals =}                 -> record (id family@vN)
--   flare.release.get(id) / list(family) / families()
--   flare.release.promote(id, {reason =, gate =}) / set_production(id, {reason =})
--   flare.release.rollback(family, {reason =}) / retire(id, {reason =}) / production(family)
--   flare.release.suite(spec) -> suite (suite.id); suite:run{sampler =, version =} -> results
--   flare.release.gate{suite =, baseline =, candidate =, gates =, out_dir =} -> report
--   flare.release.drift(train_texts, live_texts) / collapse(candidate_texts, parent_texts)
-- Every function takes {registry = PATH} (default $FLARE_REGISTRY or the XDG data dir).
local registry = require("flare.release.registry")
local stages = require("flare.release.stages")

local M = {
  register = registry.register,
  get = registry.get,
  list = registry.list,
  families = registry.families,
  set_evals = registry.set_evals,
  promote = stages.promote,
  set_production = stages.set_production,
  rollback = stages.rollback,
  retire = stages.retire,
  production = stages.production,
  default_registry = require("flare.release.store").default_path,
}

-- The gate, suite and drift modules load on first use.
local lazy = {suite = "flare.release.suite", gate = "flare.release.gate",
  drift = "flare.release.drift", collapse = "flare.release.drift", stats = "flare.release.stats"}

return setmetatable(M, {__index = function(t, k)
  local name = lazy[k]
  if not name then return nil end
  local mod = require(name)
  local v = mod[k] or mod
  if k == "stats" then v = mod end
  rawset(t, k, v)
  return v
end})
