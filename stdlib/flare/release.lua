-- flare.release: shipping trained models. A registry of versions (SQLite), stage changes
-- with their reasons, promotion gates on a frozen evaluation suite, drift and
-- reward-collapse checks. docs/release.md describes each part.
--
--   flare.release.register{family =, base_model =, snapshot = | adapter =, weights =,
--     run = run, parent =, evals =, deployment = info}     -> record (id family@vN)
--   flare.release.get(id) / list(family) / families()
--   flare.release.promote(id, {reason =, gate =}) / set_production(id, {reason =})
--   flare.release.rollback(family, {reason =}) / retire(id, {reason =}) / production(family)
--   flare.release.suite(spec) -> suite (suite.id); suite:run{sampler =, version =} -> results
--   flare.release.gate{suite =, baseline =, candidate =, gates =, out_dir =} -> report
--   flare.release.drift(train_texts, live_texts, opts) / collapse(candidate_texts, parent_texts)
--   flare.release.rollout(family, id, {steps =, hold_s =, alerts =, reason =}) -> result
--   flare.release.replay{prompts =, url =, rate =, duration_s =, verifier =} -> counts, latency
-- Every registry function takes {registry = PATH} (default $FLARE_REGISTRY or the XDG data dir).
local args = require("flare.args")
local registry = require("flare.release.registry")
local stages = require("flare.release.stages")
local drift = require("flare.release.drift")

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
  set_endpoint = stages.set_endpoint,
  canary = stages.canary,
  shadow = stages.shadow,
  route = stages.route,
  rollout = require("flare.release.rollout").run,
  replay = require("flare.release.traffic").replay,
  feedback = require("flare.release.gateway").feedback,
  default_registry = require("flare.release.store").default_path,
  suite = require("flare.release.suite").load,
  gate = require("flare.release.gate").gate,
  drift = drift.drift,
  collapse = drift.collapse,
  stats = require("flare.release.stats"),
}

local reg_only = {"opts", {registry = "string"}}
local stage_opts = {"opts", {to = "string", reason = "string", gate = "string|table",
  force = "boolean", by = "string", registry = "string"}}

return args.checked(M, "flare.release", {
  register = {{"opts", registry.register_spec}},
  get = {"id:string", reg_only},
  list = {"family:string", reg_only},
  families = {reg_only},
  set_evals = {"id:string", "evals:table", reg_only},
  promote = {"id:string", stage_opts},
  set_production = {"id:string", stage_opts},
  rollback = {"family:string", stage_opts},
  retire = {"id:string", stage_opts},
  production = {"family:string", reg_only},
  set_endpoint = {"id:string", {"opts", {base_url = "string", model = "string",
    registry = "string"}}},
  canary = {"family:string", "id:nil|string", {"opts", {percent = "number", reason = "string",
    by = "string", registry = "string"}}},
  shadow = {"family:string", "id:nil|string", {"opts", {percent = "number", reason = "string",
    by = "string", registry = "string"}}},
  route = {"family:string", reg_only},
  rollout = {"family:string", "id:string", {"opts", {steps = "table|string", hold_s = "number",
    alerts = "table", reason = "string", registry = "string", by = "string", force = "boolean",
    poll_s = "number", on_step = "function"}}},
  replay = {{"opts", {prompts = "table|string", url = "string", rate = "number",
    duration_s = "number", verifier = "string", users = "number", model = "string",
    max_tokens = "number", temperature = "number", api_key = "string", timeout_s = "number",
    max_in_flight = "number", on_answer = "function", stop = "function", interval_s = "number",
    on_interval = "function"}}},
  feedback = {"request_id:string", "score:number", reg_only},
  suite = {"spec:string|table"},
  gate = {{"opts", require("flare.release.gate").options_spec}},
  drift = {"train_texts:table", "live_texts:table", {"opts", {tokenizer = "string|function",
    max_distance = "number"}}},
  collapse = {"candidate_texts:table", "parent_texts:table", {"opts", {
    tokenizer = "string|function", max_length_growth = "number", max_distinct_drop = "number"}}},
})
