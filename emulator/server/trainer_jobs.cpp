#include "emulator/server/trainer_jobs.hpp"

#include <cmath>
#include <filesystem>
#include <set>

#include "emulator/server/api_error.hpp"
#include "emulator/server/routes.hpp"
#include "emulator/server/state_paths.hpp"

namespace flare::emulator {
namespace {

const std::set<std::string> kJobFields = {"serviceMode", "trainingConfig", "hotLoadDeploymentId",
                                          "displayName", "description",    "annotations"};
const std::set<std::string> kTrainingFields = {
    "baseModel",        "loraRank",         "loraAlpha",   "trainUnembed",
    "learningRate",     "maxContextLength", "batchSize",   "gradientAccumulationSteps",
    "epochs",           "warmupSteps",      "region",      "acceleratorType",
    "acceleratorCount", "jinjaTemplate",    "outputModel", "seed"};

std::string job_name(const ControlPlane& cp, const std::string& id) {
  return "accounts/" + cp.account + "/rlorTrainerJobs/" + id;
}

void create(RouteEnv& env, const httplib::Request& req, httplib::Response& res) {
  ControlPlane& cp = env.cp;
  check_account(cp, req.matches[1]);
  std::string id = req.get_param_value("rlorTrainerJobId");
  if (id.empty()) bad_request("query parameter 'rlorTrainerJobId' is required");
  check_resource_id("rlorTrainerJobId", id);
  nlohmann::json body = parse_body(req);
  for (auto& [k, v] : body.items()) {
    if (!kJobFields.count(k)) bad_request("unknown field '" + k + "'");
  }
  auto tc = body.find("trainingConfig");
  if (tc == body.end() || !tc->is_object())
    bad_request("field 'trainingConfig' (an object) is required");
  for (auto& [k, v] : tc->items()) {
    if (!kTrainingFields.count(k)) bad_request("unknown field 'trainingConfig." + k + "'");
  }
  std::string base = get_string(*tc, "baseModel", "");
  if (base.empty()) bad_request("field 'trainingConfig.baseModel' is required");
  if (!resolve_base_model(base)) {
    bad_request("trainingConfig.baseModel '" + base +
                "' is not a known base model (built-in models: " + known_base_models(cp.account) +
                ")");
  }
  long rank = get_int(*tc, "loraRank", 0);
  if (rank != 0 && (rank < 1 || rank > model::kMaxLoraRank)) {
    bad_request("trainingConfig.loraRank is " + std::to_string(rank) +
                ": must be 0 (full-weight training) or a LoRA rank from 1 to " +
                std::to_string(model::kMaxLoraRank));
  }
  if (rank > 0) {  // the trainer's default when the client sends none, as the service's
    double alpha = get_number(*tc, "loraAlpha", 2.0 * double(rank));
    if (!(alpha > 0) || !std::isfinite(alpha))
      bad_request("trainingConfig.loraAlpha must be a number > 0");
    (*tc)["loraAlpha"] = alpha;
  }
  if (tc->contains("trainUnembed") && !(*tc)["trainUnembed"].is_boolean())
    bad_request("trainingConfig.trainUnembed must be true or false");
  // Stored as plain integers (the gateway also takes int64 values as strings).
  if (tc->contains("loraRank")) (*tc)["loraRank"] = rank;
  if (tc->contains("seed")) (*tc)["seed"] = get_int(*tc, "seed", 0);
  double lr = get_number(*tc, "learningRate", 1e-4);
  if (!(lr > 0)) bad_request("trainingConfig.learningRate must be > 0");

  std::lock_guard lock(cp.mu);
  if (cp.jobs.count(id)) {
    throw ApiError(409, "ALREADY_EXISTS", "trainer job " + job_name(cp, id) + " already exists");
  }
  TrainerJob job;
  job.row.id = id;
  std::string dep = get_string(body, "hotLoadDeploymentId", "");
  if (!dep.empty()) {
    // A bare id or the deployment's full name.
    const std::string prefix = "accounts/" + cp.account + "/deployments/";
    std::string dep_id = dep.rfind(prefix, 0) == 0 ? dep.substr(prefix.size()) : dep;
    check_resource_id("hotLoadDeploymentId's deployment id", dep_id);
    auto it = cp.deployments.find(dep_id);
    if (it == cp.deployments.end()) {
      bad_request("hotLoadDeploymentId '" + dep + "' names no deployment of account " + cp.account);
    }
    if (resolve_base_model(it->second.base_model()) != resolve_base_model(base)) {
      bad_request("trainingConfig.baseModel '" + base + "' differs from the base model '" +
                  it->second.base_model() + "' of deployment " + dep_id);
    }
    job.row.bucket_dir = it->second.row.bucket_dir;
  } else {
    job.row.bucket_dir = cp.bucket_dir_for("trainer-" + id);
  }
  std::filesystem::create_directories(
      inside_state_dir(cp.state_dir, job.row.bucket_dir, "the trainer job's bucket"));
  job.spec = body;
  job.row.state = "JOB_STATE_PENDING";
  double now = now_s();
  job.row.create_time = job.row.update_time = now;
  job.row.deadline = now + cp.opt.provision_delay_s / 2;
  job.rt = std::make_shared<TrainerRuntime>();
  cp.save(job);
  auto& slot = cp.jobs[id] = std::move(job);
  send_json(res, 200, trainer_job_json(cp, slot, env.base_url));
}

TrainerJob& find_job(ControlPlane& cp, const std::string& id) {
  auto it = cp.jobs.find(id);
  if (it == cp.jobs.end()) not_found("trainer job " + job_name(cp, id) + " not found");
  return it->second;
}

}  // namespace

void start_trainer(ControlPlane& cp, TrainerJob& job) {
  (void)cp;
  const nlohmann::json& tc = job.spec["trainingConfig"];
  const model::Config* cfg = resolve_base_model(tc.value("baseModel", ""));
  model::LoraConfig lora;
  lora.rank = int(tc.value("loraRank", 0L));
  if (lora.rank > 0) {
    lora.alpha = tc.value("loraAlpha", 2.0 * lora.rank);
    lora.seed = uint64_t(tc.value("seed", 0L));
    lora.train_unembed = tc.value("trainUnembed", true);
  }
  job.rt->cfg = cfg;
  job.rt->trainer = std::make_unique<model::Trainer>(*cfg, model::init_weights(*cfg), 0, lora);
}

void advance_trainer_jobs(ControlPlane& cp, double now) {
  for (auto& [id, job] : cp.jobs) {
    if (now < job.row.deadline) continue;
    if (job.row.state == "JOB_STATE_PENDING") {
      job.row.state = "JOB_STATE_CREATING";
      job.row.deadline = now + cp.opt.provision_delay_s / 2;
    } else if (job.row.state == "JOB_STATE_CREATING") {
      try {
        start_trainer(cp, job);
        job.row.state = "JOB_STATE_RUNNING";
      } catch (const std::exception& e) {
        job.row.state = "JOB_STATE_FAILED";
        job.row.message = std::string("trainer failed to start: ") + e.what();
      }
    } else {
      continue;
    }
    job.row.update_time = now;
    cp.save(job);
  }
}

nlohmann::json trainer_job_json(const ControlPlane& cp, const TrainerJob& job,
                                const std::string& base_url) {
  nlohmann::json j = job.spec;
  j["name"] = job_name(cp, job.row.id);
  j["state"] = job.row.state;
  j["status"] = {{"code", job.row.state == "JOB_STATE_FAILED" ? "FAILED_PRECONDITION" : "OK"},
                 {"message", job.row.message}};
  j["createTime"] = iso_time(job.row.create_time);
  j["updateTime"] = iso_time(job.row.update_time);
  j["trainerUrl"] = base_url + "/training/v1/rlorTrainerJobs/" + cp.account + "/" + job.row.id;
  j["hotLoadBucketUrl"] = "file://" + job.row.bucket_dir + "/";
  if (!job.row.last_base.empty()) j["lastSamplerSnapshot"] = job.row.last_base;
  return j;
}

void add_trainer_job_routes(Router& r, RouteEnv& env) {
  r.post(R"(/v1/accounts/([^/]+)/rlorTrainerJobs)", Auth::ApiKey,
         [&env](const httplib::Request& req, httplib::Response& res) { create(env, req, res); });
  r.get(R"(/v1/accounts/([^/]+)/rlorTrainerJobs)", Auth::ApiKey,
        [&env](const httplib::Request& req, httplib::Response& res) {
          check_account(env.cp, req.matches[1]);
          std::lock_guard lock(env.cp.mu);
          nlohmann::json list = nlohmann::json::array();
          for (const auto& [id, j] : env.cp.jobs)
            list.push_back(trainer_job_json(env.cp, j, env.base_url));
          send_json(res, 200, {{"rlorTrainerJobs", list}, {"totalSize", list.size()}});
        });
  r.get(R"(/v1/accounts/([^/]+)/rlorTrainerJobs/([^/]+))", Auth::ApiKey,
        [&env](const httplib::Request& req, httplib::Response& res) {
          check_account(env.cp, req.matches[1]);
          std::lock_guard lock(env.cp.mu);
          send_json(res, 200,
                    trainer_job_json(env.cp, find_job(env.cp, req.matches[2]), env.base_url));
        });
  r.del(R"(/v1/accounts/([^/]+)/rlorTrainerJobs/([^/]+))", Auth::ApiKey,
        [&env](const httplib::Request& req, httplib::Response& res) {
          check_account(env.cp, req.matches[1]);
          std::shared_ptr<TrainerRuntime> rt;
          nlohmann::json out;
          {
            std::lock_guard lock(env.cp.mu);
            TrainerJob& job = find_job(env.cp, req.matches[2]);
            job.row.state = "JOB_STATE_DELETED";
            out = trainer_job_json(env.cp, job, env.base_url);
            rt = job.rt;
            env.cp.store.erase_trainer_job(job.row.id);
            env.cp.jobs.erase(job.row.id);
          }
          std::lock_guard train(rt->mu);  // let a running train step finish first
          rt->trainer.reset();
          send_json(res, 200, out);
        });
}

}  // namespace flare::emulator
