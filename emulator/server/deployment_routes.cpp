#include <cmath>
#include <ctime>
#include <filesystem>
#include <set>

#include "delta/codec.hpp"
#include "emulator/server/api_error.hpp"
#include "emulator/server/bucket.hpp"
#include "emulator/server/routes.hpp"
#include "emulator/server/state_paths.hpp"

namespace flare::emulator {
namespace {

// Fields a client may set on create, and which of them PATCH may change.
const std::set<std::string> kCreateFields = {"baseModel",         "description",
                                             "displayName",       "minReplicaCount",
                                             "maxReplicaCount",   "enableHotLoad",
                                             "forTraining",       "placement",
                                             "hotLoadBucketType", "hotLoadTrainerJob",
                                             "deploymentShape",   "acceleratorType",
                                             "acceleratorCount",  "extraArgs",
                                             "extraValues",       "annotations",
                                             "precision",         "autoscalingPolicy",
                                             "enableAddons",      "draftModel",
                                             "draftTokenCount",   "ngramSpeculationLength",
                                             "maxContextLength"};
const std::set<std::string> kImmutableFields = {"baseModel", "enableHotLoad", "hotLoadBucketType"};
const std::set<std::string> kOutputFields = {"name",         "state",      "status",
                                             "createTime",   "updateTime", "hotLoadBucketUrl",
                                             "replicaCount", "deleteTime"};

std::string snake_to_camel(const std::string& s) {
  std::string out;
  bool up = false;
  for (char c : s) {
    if (c == '_') {
      up = true;
    } else {
      out += up ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
      up = false;
    }
  }
  return out;
}

void check_replicas(const nlohmann::json& spec) {
  long min = get_int(spec, "minReplicaCount", 0);
  long max = get_int(spec, "maxReplicaCount", 1);
  if (min < 0) bad_request("minReplicaCount must be >= 0, got " + std::to_string(min));
  if (max < 0) bad_request("maxReplicaCount must be >= 0, got " + std::to_string(max));
  if (min > max) {
    bad_request("minReplicaCount (" + std::to_string(min) + ") must not exceed maxReplicaCount (" +
                std::to_string(max) + ")");
  }
}

// Normalises integer fields sent as strings (the REST gateway's int64 form).
void normalise(nlohmann::json& spec) {
  for (const char* f : {"minReplicaCount", "maxReplicaCount"}) {
    if (spec.contains(f)) spec[f] = get_int(spec, f, 0);
  }
}

nlohmann::json deployment_json(const ControlPlane& cp, const Deployment& d) {
  nlohmann::json j = d.spec;
  j["name"] = "accounts/" + cp.account + "/deployments/" + d.row.id;
  j["state"] = d.row.state;
  j["status"] = {{"code", d.row.state == "FAILED" ? "FAILED_PRECONDITION" : "OK"},
                 {"message", d.row.message}};
  j["createTime"] = iso_time(d.row.create_time);
  j["updateTime"] = iso_time(d.row.update_time);
  j["hotLoadBucketUrl"] = bucket_url(d.row.bucket_dir);
  j["replicaCount"] = d.serving->phase == Phase::Up ? 1 : 0;
  if (!j.contains("minReplicaCount")) j["minReplicaCount"] = 0;
  if (!j.contains("maxReplicaCount")) j["maxReplicaCount"] = 1;
  return j;
}

Deployment& find_deployment(ControlPlane& cp, const std::string& id) {
  auto it = cp.deployments.find(id);
  if (it == cp.deployments.end()) {
    not_found("deployment accounts/" + cp.account + "/deployments/" + id + " not found");
  }
  return it->second;
}

// The job id in a hotLoadTrainerJob reference "accounts/<account>/rlorTrainerJobs/<id>", checked.
std::string trainer_job_id(const ControlPlane& cp, const std::string& trainer) {
  const std::string prefix = "accounts/" + cp.account + "/rlorTrainerJobs/";
  if (trainer.rfind(prefix, 0) != 0 || trainer.size() == prefix.size()) {
    bad_request("hotLoadTrainerJob must look like '" + prefix + "<job>', got '" + trainer + "'");
  }
  std::string id = trainer.substr(prefix.size());
  check_resource_id("the job id of hotLoadTrainerJob", id);
  return id;
}

// The bucket of trainer job `id`: its own, or the one it gets when created later.
std::string trainer_bucket(const ControlPlane& cp, const std::string& id) {
  auto jt = cp.jobs.find(id);
  return jt != cp.jobs.end() ? jt->second.row.bucket_dir : cp.bucket_dir_for("trainer-" + id);
}

void create(RouteEnv& env, const httplib::Request& req, httplib::Response& res) {
  ControlPlane& cp = env.cp;
  check_account(cp, req.matches[1]);
  std::string id = req.get_param_value("deploymentId");
  if (id.empty()) bad_request("query parameter 'deploymentId' is required");
  check_resource_id("deploymentId", id);
  nlohmann::json body = parse_body(req);
  for (auto& [k, v] : body.items()) {
    if (!kCreateFields.count(k) && !kOutputFields.count(k))
      bad_request("unknown field '" + k + "'");
  }
  for (const auto& f : kOutputFields) body.erase(f);
  std::string base = get_string(body, "baseModel", "");
  if (base.empty()) bad_request("field 'baseModel' is required");
  check_replicas(body);
  normalise(body);
  if (!body.contains("description")) body["description"] = "Fireworks training deployment";
  std::string trainer = get_string(body, "hotLoadTrainerJob", "");
  std::string trainer_id = trainer.empty() ? "" : trainer_job_id(cp, trainer);

  std::lock_guard lock(cp.mu);
  if (cp.deployments.count(id)) {
    throw ApiError(409, "ALREADY_EXISTS",
                   "deployment accounts/" + cp.account + "/deployments/" + id + " already exists");
  }
  Deployment d;
  d.spec = body;
  d.serving = std::make_shared<Serving>();
  d.serving->cfg = resolve_base_model(base);
  double now = now_s();
  d.row.id = id;
  d.row.state = "CREATING";
  d.row.create_time = d.row.update_time = now;
  d.row.deadline = now + cp.opt.provision_delay_s;
  d.row.bucket_dir =
      trainer_id.empty() ? cp.bucket_dir_for("deployment-" + id) : trainer_bucket(cp, trainer_id);
  std::filesystem::create_directories(
      inside_state_dir(cp.state_dir, d.row.bucket_dir, "the deployment's bucket"));
  if (d.serving->cfg) {
    std::string path;
    d.serving->current = d.serving->base = cp.initial_checkpoint(*d.serving->cfg, &path);
    d.row.snapshot = d.row.base_snapshot = base;
    d.row.snapshot_file = d.row.base_file = path;
  }
  cp.save(d);
  auto& slot = cp.deployments[id] = std::move(d);
  send_json(res, 200, deployment_json(cp, slot));
}

// PATCH hotLoadTrainerJob (the SDK's reattach_trainer): the deployment takes the trainer's bucket
// and its replica is replaced by a fresh one, which serves the base model until a hotload.
void reattach_trainer(ControlPlane& cp, Deployment& d, const std::string& trainer) {
  std::string bucket = trainer.empty() ? cp.bucket_dir_for("deployment-" + d.row.id)
                                       : trainer_bucket(cp, trainer_job_id(cp, trainer));
  if (d.serving->loading_busy) {
    throw ApiError(409, "ABORTED",
                   "a hotload is in progress on deployment " + d.row.id +
                       "; reattach it when the hotload has finished");
  }
  std::filesystem::create_directories(
      inside_state_dir(cp.state_dir, bucket, "the trainer job's bucket"));
  d.row.bucket_dir = bucket;
  if (!d.serving->cfg) return;
  std::vector<std::string> old = {d.row.snapshot_file, d.row.base_file};
  std::string path;
  d.serving->current = d.serving->base = cp.initial_checkpoint(*d.serving->cfg, &path);
  d.serving->adapter = nullptr;
  d.row.snapshot = d.row.base_snapshot = d.base_model();
  d.row.snapshot_file = d.row.base_file = path;
  d.serving->loading = {};
  cp.remove_unreferenced(d.row.id, old);
  if (d.serving->phase != Phase::Down) {
    cp.scale_down(d);
    cp.request_scale_up(d);
  }
}

void update(RouteEnv& env, const httplib::Request& req, httplib::Response& res) {
  ControlPlane& cp = env.cp;
  check_account(cp, req.matches[1]);
  nlohmann::json body = parse_body(req);
  std::vector<std::string> fields;
  std::string mask = req.get_param_value("updateMask");
  if (!mask.empty()) {
    size_t start = 0;
    while (start <= mask.size()) {
      size_t comma = mask.find(',', start);
      std::string f =
          mask.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      while (!f.empty() && f.front() == ' ') f.erase(0, 1);
      while (!f.empty() && f.back() == ' ') f.pop_back();
      if (!f.empty()) fields.push_back(snake_to_camel(f));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  } else {
    for (auto& [k, v] : body.items()) {
      if (!kOutputFields.count(k)) fields.push_back(k);
    }
  }
  for (const auto& f : fields) {
    if (!kCreateFields.count(f)) bad_request("updateMask names unknown field '" + f + "'");
    if (kImmutableFields.count(f))
      bad_request("field '" + f + "' cannot be changed after creation");
  }

  std::lock_guard lock(cp.mu);
  Deployment& d = find_deployment(cp, req.matches[2]);
  if (d.row.state == "DELETING") {
    throw ApiError(400, "FAILED_PRECONDITION", "deployment " + d.row.id + " is being deleted");
  }
  nlohmann::json spec = d.spec;
  for (const auto& f : fields) {
    if (body.contains(f)) {
      spec[f] = body[f];
    } else {
      spec.erase(f);
    }
  }
  check_replicas(spec);
  normalise(spec);
  std::string old_trainer = d.spec.value("hotLoadTrainerJob", std::string());
  std::string new_trainer = spec.value("hotLoadTrainerJob", std::string());
  if (new_trainer != old_trainer) reattach_trainer(cp, d, new_trainer);
  d.spec = spec;
  d.row.update_time = now_s();
  if (d.row.state == "READY") {
    if (d.max_replicas() == 0) {
      cp.scale_down(d);
    } else if (d.min_replicas() > 0) {
      cp.request_scale_up(d);
    }
  }
  cp.save(d);
  send_json(res, 200, deployment_json(cp, d));
}

void remove(RouteEnv& env, const httplib::Request& req, httplib::Response& res) {
  ControlPlane& cp = env.cp;
  check_account(cp, req.matches[1]);
  for (const char* p : {"ignoreChecks", "hard"}) {
    if (req.has_param(p)) {
      std::string v = req.get_param_value(p);
      if (v != "true" && v != "false")
        bad_request(std::string("query parameter '") + p + "' must be true or false");
    }
  }
  std::lock_guard lock(cp.mu);
  Deployment& d = find_deployment(cp, req.matches[2]);
  if (d.row.state != "DELETING") {
    if (!d.spec.value("hotLoadTrainerJob", std::string()).empty() &&
        req.get_param_value("ignoreChecks") != "true") {
      // A deployment tied to a live trainer job keeps its bucket in use.
      std::string job = d.spec["hotLoadTrainerJob"].get<std::string>();
      auto jid = job.substr(job.rfind('/') + 1);
      if (cp.jobs.count(jid)) {
        throw ApiError(400, "FAILED_PRECONDITION",
                       "deployment " + d.row.id + " is linked to trainer job " + job +
                           "; delete the job first or pass ignoreChecks=true");
      }
    }
    d.row.state = "DELETING";
    d.row.update_time = now_s();
    d.row.deadline = d.row.update_time + cp.opt.provision_delay_s / 2;
    cp.save(d);
  }
  send_json(res, 200, deployment_json(cp, d));
}

}  // namespace

std::string iso_time(double epoch_s) {
  std::time_t t = static_cast<std::time_t>(epoch_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  int ms = static_cast<int>((epoch_s - std::floor(epoch_s)) * 1000);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, ms);
  return out;
}

void check_account(const ControlPlane& cp, const std::string& acct) {
  if (acct != cp.account)
    not_found("account '" + acct + "' not found (this server has '" + cp.account + "')");
}

void add_deployment_routes(Router& r, RouteEnv& env) {
  r.get("/v1/accounts", Auth::ApiKey, [&env](const httplib::Request& req, httplib::Response& res) {
    if (req.has_param("pageSize"))
      get_int({{"pageSize", req.get_param_value("pageSize")}}, "pageSize", 0);
    // Lets a client given only a URL and a key (a standalone `flare serve`) know which delta
    // format this server's hotload accepts; the cloud sends no such header.
    res.set_header("x-flare-delta-format", std::string(delta::kFormatName));
    send_json(res, 200,
              {{"accounts",
                {{{"name", "accounts/" + env.cp.account},
                  {"displayName", "flare local emulator"},
                  {"state", "READY"}}}},
               {"totalSize", 1}});
  });
  r.get(R"(/v1/accounts/([^/]+))", Auth::ApiKey,
        [&env](const httplib::Request& req, httplib::Response& res) {
          check_account(env.cp, req.matches[1]);
          send_json(res, 200, {{"name", "accounts/" + env.cp.account}, {"state", "READY"}});
        });
  r.post(R"(/v1/accounts/([^/]+)/deployments)", Auth::ApiKey,
         [&env](const httplib::Request& req, httplib::Response& res) { create(env, req, res); });
  r.get(R"(/v1/accounts/([^/]+)/deployments)", Auth::ApiKey,
        [&env](const httplib::Request& req, httplib::Response& res) {
          check_account(env.cp, req.matches[1]);
          std::lock_guard lock(env.cp.mu);
          nlohmann::json list = nlohmann::json::array();
          for (const auto& [id, d] : env.cp.deployments) list.push_back(deployment_json(env.cp, d));
          send_json(res, 200, {{"deployments", list}, {"totalSize", list.size()}});
        });
  r.get(R"(/v1/accounts/([^/]+)/deployments/([^/]+))", Auth::ApiKey,
        [&env](const httplib::Request& req, httplib::Response& res) {
          check_account(env.cp, req.matches[1]);
          std::lock_guard lock(env.cp.mu);
          send_json(res, 200, deployment_json(env.cp, find_deployment(env.cp, req.matches[2])));
        });
  r.patch(R"(/v1/accounts/([^/]+)/deployments/([^/]+))", Auth::ApiKey,
          [&env](const httplib::Request& req, httplib::Response& res) { update(env, req, res); });
  r.del(R"(/v1/accounts/([^/]+)/deployments/([^/]+))", Auth::ApiKey,
        [&env](const httplib::Request& req, httplib::Response& res) { remove(env, req, res); });
}

}  // namespace flare::emulator
