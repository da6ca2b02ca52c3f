// LoRA models (/v1/accounts/<a>/models) and deployed models
// (/v1/accounts/<a>/deployedModels): the Fireworks multi-LoRA protocol.
#include <filesystem>
#include <random>

#include "emulator/server/api_error.hpp"
#include "emulator/server/bucket.hpp"
#include "emulator/server/checkpoint.hpp"
#include "emulator/server/replica.hpp"
#include "emulator/server/routes.hpp"
#include "emulator/server/state_paths.hpp"
#include "runtime/file_io.hpp"

namespace fs = std::filesystem;

namespace flare::emulator {
namespace {

const char* kAddonKind = "HF_PEFT_ADDON";
const std::set<std::string> kModelFields = {"displayName", "description", "kind",
                                            "peftDetails", "public",      "contextLength"};

std::string models_prefix(const ControlPlane& cp) {
  return "accounts/" + cp.account + "/models/";
}

// "accounts/<a>/<collection>/<id>" -> id; 400 naming `field` otherwise.
std::string id_in(const ControlPlane& cp, const std::string& name, const std::string& collection,
                  const char* field) {
  std::string prefix = "accounts/" + cp.account + "/" + collection + "/";
  if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size() ||
      name.find('/', prefix.size()) != std::string::npos)
    bad_request(std::string("field '") + field + "' must look like '" + prefix + "<id>', got '" +
                name + "'");
  return name.substr(prefix.size());
}

std::string base_id(const std::string& deployment) {
  return "base-" + deployment;
}

nlohmann::json model_json(const ControlPlane& cp, const LoraModel& m) {
  nlohmann::json j = m.spec;
  j["name"] = models_prefix(cp) + m.id;
  j["state"] = m.state;
  j["status"] = {{"code", "OK"}, {"message", ""}};
  j["createTime"] = iso_time(m.create_time);
  j["updateTime"] = iso_time(m.update_time);
  if (m.source.contains("trainerJob")) j["source"] = m.source;  // flare: where it was trained
  nlohmann::json refs = nlohmann::json::array();
  for (const auto& [id, dm] : cp.deployed_models) {
    if (dm.model_id != m.id) continue;
    refs.push_back({{"name", "accounts/" + cp.account + "/deployedModels/" + id},
                    {"deployment", "accounts/" + cp.account + "/deployments/" + dm.deployment_id},
                    {"state", addon_status(cp, dm)}});
  }
  j["deployedModelRefs"] = refs;
  return j;
}

nlohmann::json deployed_json(const ControlPlane& cp, const DeployedModel& dm) {
  std::string status = addon_status(cp, dm);
  nlohmann::json source = {{"baseModel", false}};
  auto mt = cp.lora_models.find(dm.model_id);
  if (mt != cp.lora_models.end()) source.update(mt->second.source);
  return {{"name", "accounts/" + cp.account + "/deployedModels/" + dm.id},
          {"displayName", dm.display_name},
          {"description", dm.description},
          {"createTime", iso_time(dm.create_time)},
          {"updateTime", iso_time(dm.update_time)},
          {"model", models_prefix(cp) + dm.model_id},
          {"deployment", "accounts/" + cp.account + "/deployments/" + dm.deployment_id},
          {"default", false},
          {"serverless", false},
          {"public", false},
          {"state", status},
          {"status",
           {{"code", status == "FAILED" ? "FAILED_PRECONDITION" : "OK"}, {"message", dm.failure}}},
          {"source", source}};
}

// The engine's own base model, always listed while the engine exists.
nlohmann::json base_deployed_json(const ControlPlane& cp, const Deployment& d) {
  DeployedModel pseudo;
  pseudo.deployment_id = d.row.id;
  pseudo.loaded_once = true;
  std::string status = addon_status(cp, pseudo);
  if (status == "REACTIVATING" && d.serving->phase == Phase::Up) status = "DEPLOYED";
  if (d.row.state == "FAILED") pseudo.failure = d.row.message;
  return {
      {"name", "accounts/" + cp.account + "/deployedModels/" + base_id(d.row.id)},
      {"displayName", d.base_model()},
      {"description", "the engine's base model"},
      {"createTime", iso_time(d.row.create_time)},
      {"updateTime", iso_time(d.row.update_time)},
      {"model", d.base_model()},
      {"deployment", "accounts/" + cp.account + "/deployments/" + d.row.id},
      {"default", true},
      {"serverless", false},
      {"public", false},
      {"state", status},
      {"status",
       {{"code", status == "FAILED" ? "FAILED_PRECONDITION" : "OK"}, {"message", pseudo.failure}}},
      {"source", {{"baseModel", true}}}};
}

LoraModel& find_model(ControlPlane& cp, const std::string& id) {
  auto it = cp.lora_models.find(id);
  if (it == cp.lora_models.end()) not_found("model " + models_prefix(cp) + id + " not found");
  return it->second;
}

const model::Config& base_config(const LoraModel& m) {
  const model::Config* cfg = resolve_base_model(m.base_model());
  if (!cfg) bad_request("peftDetails.baseModel '" + m.base_model() + "' is not a known model");
  return *cfg;
}

// Reads the folder as the engine will; 400 with the reader's reason otherwise.
void validate_folder(const LoraModel& m) {
  try {
    load_adapter(base_config(m), m.dir);
  } catch (const std::invalid_argument& e) {
    bad_request(std::string("model ") + m.id + ": the adapter cannot be served: " + e.what());
  } catch (const std::runtime_error& e) {
    bad_request(std::string("model ") + m.id + ": the adapter cannot be read: " + e.what());
  }
}

void create_model(RouteEnv& env, const httplib::Request& req, httplib::Response& res) {
  ControlPlane& cp = env.cp;
  check_account(cp, req.matches[1]);
  nlohmann::json body = parse_body(req);
  for (auto& [k, v] : body.items()) {
    if (k != "modelId" && k != "model" && k != "cluster" && k != "source")
      bad_request("unknown field '" + k + "'");
  }
  std::string id = get_string(body, "modelId", "");
  check_resource_id("modelId", id);
  if (!body.contains("model") || !body["model"].is_object())
    bad_request("field 'model' must be an object");
  nlohmann::json spec = body["model"];
  for (auto& [k, v] : spec.items()) {
    if (!kModelFields.count(k)) bad_request("unknown field 'model." + k + "'");
  }
  std::string kind = get_string(spec, "kind", "");
  if (kind != kAddonKind)
    bad_request("field 'model.kind' must be \"" + std::string(kAddonKind) +
                "\" (this server imports LoRA addons only), got \"" + kind + "\"");
  if (!spec.contains("peftDetails") || !spec["peftDetails"].is_object())
    bad_request("field 'model.peftDetails' must be an object naming baseModel");
  std::string base = get_string(spec["peftDetails"], "baseModel", "");
  if (!resolve_base_model(base))
    bad_request("field 'model.peftDetails.baseModel' '" + base +
                "' is not a known model (built-in models: " + known_base_models(cp.account) + ")");

  LoraModel m;
  m.id = id;
  m.spec = spec;
  m.dir = cp.state_dir + "/lora-models/" + id;
  m.create_time = m.update_time = now_s();
  std::lock_guard lock(cp.mu);
  if (cp.lora_models.count(id))
    throw ApiError(409, "ALREADY_EXISTS", "model " + models_prefix(cp) + id + " already exists");
  if (body.contains("source")) {
    // flare: import a trainer's sampler snapshot (save_weights_for_sampler with LoRA).
    const nlohmann::json& src = body["source"];
    if (!src.is_object()) bad_request("field 'source' must be an object {trainerJob, snapshot}");
    std::string job = get_string(src, "trainerJob", "");
    std::string job_id = id_in(cp, job, "rlorTrainerJobs", "source.trainerJob");
    std::string snapshot = get_string(src, "snapshot", "");
    try {
      check_snapshot_name(snapshot);
    } catch (const std::invalid_argument& e) {
      bad_request(std::string("field 'source.snapshot': ") + e.what());
    }
    auto jt = cp.jobs.find(job_id);
    if (jt == cp.jobs.end()) not_found("trainer job " + job + " not found");
    std::string folder = snapshot_dir(jt->second.row.bucket_dir, snapshot);
    if (!is_peft_adapter_dir(folder))
      bad_request("field 'source.snapshot': '" + snapshot + "' of " + job +
                  " is not a LoRA snapshot (no " + kAdapterConfigFile +
                  "; save it with save_weights_for_sampler from a trainer with loraRank > 0)");
    fs::create_directories(m.dir);
    for (const char* f : {kAdapterConfigFile, kAdapterFile})
      fs::copy_file(folder + "/" + f, m.dir + "/" + f, fs::copy_options::overwrite_existing);
    m.source = {{"trainerJob", job}, {"snapshot", snapshot}};
    try {
      validate_folder(m);
    } catch (...) {
      fs::remove_all(m.dir);
      throw;
    }
    m.state = "READY";
  } else {
    m.source = {{"upload", true}};
    m.state = "UPLOADING";
  }
  cp.save(m);
  auto& slot = cp.lora_models[id] = std::move(m);
  send_json(res, 200, model_json(cp, slot));
}

std::string checked_file_name(const std::string& f) {
  if (f != kAdapterConfigFile && f != kAdapterFile)
    bad_request("file '" + f + "' is not part of a PEFT adapter (expected " + kAdapterConfigFile +
                " and " + kAdapterFile + ")");
  return f;
}

void upload_endpoint(RouteEnv& env, const httplib::Request& req, httplib::Response& res) {
  ControlPlane& cp = env.cp;
  check_account(cp, req.matches[1]);
  nlohmann::json body = parse_body(req);
  if (!body.contains("filenameToSize") || !body["filenameToSize"].is_object())
    bad_request("field 'filenameToSize' must be an object of file name -> size");
  std::lock_guard lock(cp.mu);
  LoraModel& m = find_model(cp, req.matches[2]);
  nlohmann::json urls = nlohmann::json::object();
  for (auto& [f, size] : body["filenameToSize"].items()) {
    checked_file_name(f);
    urls[f] = env.base_url + "/v1/accounts/" + cp.account + "/models/" + m.id + "/files/" + f;
  }
  send_json(res, 200, {{"filenameToSignedUrls", urls}});
}

void upload_file(RouteEnv& env, const httplib::Request& req, httplib::Response& res) {
  ControlPlane& cp = env.cp;
  check_account(cp, req.matches[1]);
  std::string f = checked_file_name(req.matches[3]);
  std::lock_guard lock(cp.mu);
  LoraModel& m = find_model(cp, req.matches[2]);
  if (m.state != "UPLOADING")
    bad_request("model " + m.id + " is " + m.state + "; files are accepted while UPLOADING");
  fs::create_directories(m.dir);
  write_file_atomic(m.dir + "/" + f, std::as_bytes(std::span(req.body.data(), req.body.size())));
  send_json(res, 200, nlohmann::json::object());
}

void validate_upload(RouteEnv& env, const httplib::Request& req, httplib::Response& res) {
  ControlPlane& cp = env.cp;
  check_account(cp, req.matches[1]);
  std::lock_guard lock(cp.mu);
  LoraModel& m = find_model(cp, req.matches[2]);
  if (m.state == "UPLOADING") {
    validate_folder(m);
    m.state = "READY";
    m.update_time = now_s();
    cp.save(m);
  }
  send_json(res, 200, nlohmann::json::object());
}

void delete_model(RouteEnv& env, const httplib::Request& req, httplib::Response& res) {
  ControlPlane& cp = env.cp;
  check_account(cp, req.matches[1]);
  std::lock_guard lock(cp.mu);
  LoraModel& m = find_model(cp, req.matches[2]);
  for (const auto& [id, dm] : cp.deployed_models) {
    if (dm.model_id == m.id)
      throw ApiError(400, "FAILED_PRECONDITION",
                     "model " + m.id + " is deployed as accounts/" + cp.account +
                         "/deployedModels/" + id + "; undeploy it first");
  }
  std::error_code ec;
  fs::remove_all(m.dir, ec);
  cp.store.erase_record(kLoraModelKind, m.id);
  cp.lora_models.erase(m.id);
  send_json(res, 200, nlohmann::json::object());
}

std::string random_suffix() {
  static std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 8; ++i) s += hex[rng() % 16];
  return s;
}

void create_deployed(RouteEnv& env, const httplib::Request& req, httplib::Response& res) {
  ControlPlane& cp = env.cp;
  check_account(cp, req.matches[1]);
  nlohmann::json body = parse_body(req);
  for (auto& [k, v] : body.items()) {
    if (k != "displayName" && k != "description" && k != "model" && k != "deployment" &&
        k != "default" && k != "serverless" && k != "public")
      bad_request("unknown field '" + k + "'");
  }
  if (req.has_param("replaceMergedAddon") && req.get_param_value("replaceMergedAddon") == "true")
    bad_request(
        "replaceMergedAddon: this server serves addons unmerged on engines "
        "(enableAddons); hotload a snapshot to replace a deployment's weights");
  std::string model_id = id_in(cp, get_string(body, "model", ""), "models", "model");
  std::string dep_id = id_in(cp, get_string(body, "deployment", ""), "deployments", "deployment");
  std::lock_guard lock(cp.mu);
  LoraModel& m = find_model(cp, model_id);
  if (m.state != "READY")
    throw ApiError(400, "FAILED_PRECONDITION",
                   "model " + m.id + " is " + m.state + "; upload its files and validate it first");
  auto dt = cp.deployments.find(dep_id);
  if (dt == cp.deployments.end() || dt->second.row.state == "DELETING")
    not_found("deployment accounts/" + cp.account + "/deployments/" + dep_id + " not found");
  Deployment& d = dt->second;
  if (!d.addons_enabled())
    throw ApiError(400, "FAILED_PRECONDITION",
                   "deployment " + dep_id +
                       " was created without enableAddons; create an engine with "
                       "enableAddons: true to serve LoRA addons");
  const model::Config* mine = resolve_base_model(m.base_model());
  if (!d.serving->cfg || !mine || mine->name != d.serving->cfg->name)
    throw ApiError(400, "FAILED_PRECONDITION",
                   "model " + m.id + " is an addon of base model '" + m.base_model() +
                       "', deployment " + dep_id + " serves '" + d.base_model() + "'");
  for (const auto& [id, dm] : cp.deployed_models) {
    if (dm.model_id == m.id && dm.deployment_id == dep_id)
      throw ApiError(409, "ALREADY_EXISTS",
                     "model " + m.id + " is already deployed on " + dep_id + " as accounts/" +
                         cp.account + "/deployedModels/" + id);
  }
  DeployedModel dm;
  dm.id = m.id.substr(0, 54) + "-" + random_suffix();
  dm.model_id = m.id;
  dm.deployment_id = dep_id;
  dm.display_name = get_string(body, "displayName", m.spec.value("displayName", m.id));
  dm.description = get_string(body, "description", "");
  dm.create_time = dm.update_time = now_s();
  cp.save(dm);
  auto& slot = cp.deployed_models[dm.id] = std::move(dm);
  send_json(res, 200, deployed_json(cp, slot));
  cp.kick();
}

void get_deployed(RouteEnv& env, const httplib::Request& req, httplib::Response& res) {
  ControlPlane& cp = env.cp;
  check_account(cp, req.matches[1]);
  std::string id = req.matches[2];
  std::lock_guard lock(cp.mu);
  auto it = cp.deployed_models.find(id);
  if (it != cp.deployed_models.end()) return send_json(res, 200, deployed_json(cp, it->second));
  for (const auto& [did, d] : cp.deployments) {
    if (d.addons_enabled() && base_id(did) == id)
      return send_json(res, 200, base_deployed_json(cp, d));
  }
  not_found("deployed model accounts/" + cp.account + "/deployedModels/" + id + " not found");
}

void list_deployed(RouteEnv& env, const httplib::Request& req, httplib::Response& res) {
  ControlPlane& cp = env.cp;
  check_account(cp, req.matches[1]);
  // filter: deployment="accounts/<a>/deployments/<d>" (AIP-160, the one form this server reads).
  std::string only;
  if (req.has_param("filter")) {
    std::string f = req.get_param_value("filter");
    std::string key = "deployment=";
    if (f.rfind(key, 0) != 0) bad_request("filter: only deployment=\"<deployment name>\" is read");
    f = f.substr(key.size());
    if (f.size() >= 2 && f.front() == '"' && f.back() == '"') f = f.substr(1, f.size() - 2);
    only = id_in(cp, f, "deployments", "filter");
  }
  std::lock_guard lock(cp.mu);
  nlohmann::json list = nlohmann::json::array();
  for (const auto& [did, d] : cp.deployments) {
    if (!d.addons_enabled() || (!only.empty() && did != only)) continue;
    list.push_back(base_deployed_json(cp, d));
    for (const auto& [id, dm] : cp.deployed_models) {
      if (dm.deployment_id == did) list.push_back(deployed_json(cp, dm));
    }
  }
  send_json(res, 200, {{"deployedModels", list}, {"totalSize", list.size()}});
}

void delete_deployed(RouteEnv& env, const httplib::Request& req, httplib::Response& res) {
  ControlPlane& cp = env.cp;
  check_account(cp, req.matches[1]);
  std::string id = req.matches[2];
  std::lock_guard lock(cp.mu);
  auto it = cp.deployed_models.find(id);
  if (it == cp.deployed_models.end()) {
    for (const auto& [did, d] : cp.deployments) {
      if (d.addons_enabled() && base_id(did) == id)
        throw ApiError(400, "FAILED_PRECONDITION",
                       "the base model deployment of " + did +
                           " cannot be removed on its own; delete the deployment to remove it "
                           "with all its addons");
    }
    not_found("deployed model accounts/" + cp.account + "/deployedModels/" + id + " not found");
  }
  cp.erase(it->second);  // requests already running keep their adapter until they finish
  send_json(res, 200, nlohmann::json::object());
}

}  // namespace

void add_addon_routes(Router& r, RouteEnv& env) {
  using Req = const httplib::Request&;
  using Res = httplib::Response&;
  r.post(R"(/v1/accounts/([^/]+)/models)", Auth::ApiKey,
         [&env](Req q, Res s) { create_model(env, q, s); });
  r.get(R"(/v1/accounts/([^/]+)/models)", Auth::ApiKey, [&env](Req q, Res s) {
    check_account(env.cp, q.matches[1]);
    std::lock_guard lock(env.cp.mu);
    nlohmann::json list = nlohmann::json::array();
    for (const auto& [id, m] : env.cp.lora_models) list.push_back(model_json(env.cp, m));
    send_json(s, 200, {{"models", list}, {"totalSize", list.size()}});
  });
  r.get(R"(/v1/accounts/([^/]+)/models/([^/:]+))", Auth::ApiKey, [&env](Req q, Res s) {
    check_account(env.cp, q.matches[1]);
    std::lock_guard lock(env.cp.mu);
    send_json(s, 200, model_json(env.cp, find_model(env.cp, q.matches[2])));
  });
  r.del(R"(/v1/accounts/([^/]+)/models/([^/:]+))", Auth::ApiKey,
        [&env](Req q, Res s) { delete_model(env, q, s); });
  r.post(R"(/v1/accounts/([^/]+)/models/([^/:]+):getUploadEndpoint)", Auth::ApiKey,
         [&env](Req q, Res s) { upload_endpoint(env, q, s); });
  r.put(R"(/v1/accounts/([^/]+)/models/([^/:]+)/files/([^/]+))", Auth::ApiKey,
        [&env](Req q, Res s) { upload_file(env, q, s); });
  r.post(R"(/v1/accounts/([^/]+)/models/([^/:]+):validateUpload)", Auth::ApiKey,
         [&env](Req q, Res s) { validate_upload(env, q, s); });
  r.post(R"(/v1/accounts/([^/]+)/deployedModels)", Auth::ApiKey,
         [&env](Req q, Res s) { create_deployed(env, q, s); });
  r.get(R"(/v1/accounts/([^/]+)/deployedModels)", Auth::ApiKey,
        [&env](Req q, Res s) { list_deployed(env, q, s); });
  r.get(R"(/v1/accounts/([^/]+)/deployedModels/([^/]+))", Auth::ApiKey,
        [&env](Req q, Res s) { get_deployed(env, q, s); });
  r.del(R"(/v1/accounts/([^/]+)/deployedModels/([^/]+))", Auth::ApiKey,
        [&env](Req q, Res s) { delete_deployed(env, q, s); });
}

}  // namespace flare::emulator
