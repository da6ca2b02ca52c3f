#pragma once
// LoRA addons on engines (the Fireworks multi-LoRA protocol): a LoRA model
// (/v1/accounts/<a>/models, kind HF_PEFT_ADDON) is a PEFT adapter folder kept
// in the state dir; a deployed model (/v1/accounts/<a>/deployedModels) loads
// one onto a deployment created with enableAddons, which serves its base model
// and every addon loaded on it in the same forward passes.
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "emulator/model/model.hpp"

namespace flare::emulator {

struct LoraModel {
  std::string id;
  nlohmann::json spec;    // the client's model object (kind, displayName, peftDetails, ...)
  std::string state;      // UPLOADING (files expected) | READY
  nlohmann::json source;  // {"trainerJob", "snapshot"} or {"upload": true}
  double create_time = 0;
  double update_time = 0;
  std::string dir;  // <state>/lora-models/<id>: adapter_config.json + adapter_model.safetensors
  std::string base_model() const;
  nlohmann::json to_record() const;
  static LoraModel from_record(const std::string& id, const nlohmann::json& j);
};

// One addon on one engine. Its status is derived from the engine's state
// (addon_status) except a load failure, which is remembered with its reason.
struct DeployedModel {
  std::string id;
  std::string model_id;       // LoraModel id
  std::string deployment_id;  // the engine
  std::string display_name;
  std::string description;
  double create_time = 0;
  double update_time = 0;
  bool loaded_once = false;  // served at least once (Deactivated/Reactivating vs Pending)
  std::string failure;       // non-empty: Failed, with the reason
  nlohmann::json to_record() const;
  static DeployedModel from_record(const std::string& id, const nlohmann::json& j);
};

class ControlPlane;
struct Deployment;

// The product's deployment statuses: PENDING (the engine is provisioning),
// DEPLOYING (loading onto the active engine), DEPLOYED, DEACTIVATED (the engine
// is inactive; the deployment is remembered), REACTIVATING (the engine is
// coming back and reloads it), FAILED (failure says why). Call with cp.mu held.
std::string addon_status(const ControlPlane& cp, const DeployedModel& dm);

// Loading an addon reads its folder, which may be slow: it runs without cp.mu
// held, so requests (completions on the engine's other addons, control-plane
// calls) go on meanwhile, and the result is installed under the lock.
struct Serving;
struct AddonLoad {
  std::string deployed_model_id, deployment_id, model_id, dir;
  std::shared_ptr<Serving> serving;  // the replica the adapter is for
  const model::Config* cfg = nullptr;
};
// The deployed models of engine `d` its replica does not serve yet (a new one,
// or all of them after a reactivation) and that no load is running for; marks
// them as loading. Call with cp.mu held and the replica up.
std::vector<AddonLoad> take_addon_loads(ControlPlane& cp, Deployment& d);
// Reads each adapter without cp.mu, then under it installs those whose replica
// is still up and whose deployed model still targets it (Failed with the
// reason when the folder cannot be loaded). Call without cp.mu held.
void run_addon_loads(ControlPlane& cp, const std::vector<AddonLoad>& loads);

inline constexpr const char* kLoraModelKind = "lora_model";
inline constexpr const char* kDeployedModelKind = "deployed_model";

}  // namespace flare::emulator
