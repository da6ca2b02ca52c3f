#include "emulator/server/addons.hpp"

#include "emulator/server/control_plane.hpp"
#include "emulator/server/replica.hpp"
#include "emulator/server/state_paths.hpp"

namespace flare::emulator {

std::string LoraModel::base_model() const {
  auto it = spec.find("peftDetails");
  if (it == spec.end() || !it->is_object()) return "";
  return it->value("baseModel", std::string());
}

nlohmann::json LoraModel::to_record() const {
  return {{"spec", spec},
          {"state", state},
          {"source", source},
          {"dir", dir},
          {"createTime", create_time},
          {"updateTime", update_time}};
}

LoraModel LoraModel::from_record(const std::string& id, const nlohmann::json& j) {
  LoraModel m;
  m.id = id;
  m.spec = j.at("spec");
  m.state = j.at("state").get<std::string>();
  m.source = j.at("source");
  m.dir = j.at("dir").get<std::string>();
  m.create_time = j.at("createTime").get<double>();
  m.update_time = j.at("updateTime").get<double>();
  return m;
}

nlohmann::json DeployedModel::to_record() const {
  return {{"model", model_id},           {"deployment", deployment_id},
          {"displayName", display_name}, {"description", description},
          {"createTime", create_time},   {"updateTime", update_time},
          {"loadedOnce", loaded_once},   {"failure", failure}};
}

DeployedModel DeployedModel::from_record(const std::string& id, const nlohmann::json& j) {
  DeployedModel dm;
  dm.id = id;
  dm.model_id = j.at("model").get<std::string>();
  dm.deployment_id = j.at("deployment").get<std::string>();
  dm.display_name = j.at("displayName").get<std::string>();
  dm.description = j.at("description").get<std::string>();
  dm.create_time = j.at("createTime").get<double>();
  dm.update_time = j.at("updateTime").get<double>();
  dm.loaded_once = j.at("loadedOnce").get<bool>();
  dm.failure = j.at("failure").get<std::string>();
  return dm;
}

std::string addon_status(const ControlPlane& cp, const DeployedModel& dm) {
  if (!dm.failure.empty()) return "FAILED";
  auto it = cp.deployments.find(dm.deployment_id);
  if (it == cp.deployments.end()) return "FAILED";
  const Deployment& d = it->second;
  const Serving& s = *d.serving;
  if (d.row.state == "CREATING") return "PENDING";
  if (d.row.state == "FAILED") return "FAILED";
  if (d.row.state == "DELETING") return "UNDEPLOYING";
  switch (s.phase) {
    case Phase::Down:
      return dm.loaded_once ? "DEACTIVATED" : "PENDING";
    case Phase::Starting:
      return dm.loaded_once ? "REACTIVATING" : "PENDING";
    case Phase::Up:
      break;
  }
  if (s.addons.count(dm.id)) return "DEPLOYED";
  return dm.loaded_once ? "REACTIVATING" : "DEPLOYING";
}

std::vector<AddonLoad> take_addon_loads(ControlPlane& cp, Deployment& d) {
  Serving& s = *d.serving;
  std::vector<AddonLoad> loads;
  if (!s.cfg) return loads;
  for (auto& [id, dm] : cp.deployed_models) {
    if (dm.deployment_id != d.row.id || s.addons.count(id) || s.addons_loading.count(id) ||
        !dm.failure.empty())
      continue;
    auto mt = cp.lora_models.find(dm.model_id);
    if (mt == cp.lora_models.end()) {
      dm.failure = "loading the adapter failed: model '" + dm.model_id + "' no longer exists";
      dm.update_time = now_s();
      cp.save(dm);
      continue;
    }
    s.addons_loading.insert(id);
    loads.push_back({id, d.row.id, dm.model_id, mt->second.dir, d.serving, s.cfg});
  }
  return loads;
}

void run_addon_loads(ControlPlane& cp, const std::vector<AddonLoad>& loads) {
  for (const AddonLoad& l : loads) {
    std::shared_ptr<const model::Adapter> adapter;
    std::string error;
    try {
      adapter = load_adapter(*l.cfg, l.dir);
    } catch (const std::exception& e) {
      error = e.what();
    }
    std::lock_guard lock(cp.mu);
    l.serving->addons_loading.erase(l.deployed_model_id);
    auto dt = cp.deployments.find(l.deployment_id);
    auto mt = cp.deployed_models.find(l.deployed_model_id);
    // Undeployed, moved, or the replica went away meanwhile: nothing to install (a new
    // replica loads its deployed models again).
    if (dt == cp.deployments.end() || dt->second.serving != l.serving ||
        l.serving->phase != Phase::Up || mt == cp.deployed_models.end() ||
        mt->second.deployment_id != l.deployment_id || mt->second.model_id != l.model_id)
      continue;
    DeployedModel& dm = mt->second;
    if (adapter) {
      l.serving->addons[dm.id] = std::move(adapter);
      dm.loaded_once = true;
    } else {
      dm.failure = "loading the adapter failed: " + hide_state_dir(cp.state_dir, error);
    }
    dm.update_time = now_s();
    cp.save(dm);
  }
}

}  // namespace flare::emulator
