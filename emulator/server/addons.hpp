#pragma once
// LoRA addons on engines (the Fireworks multi-LoRA protocol): a LoRA model
// (/v1/accounts/<a>/models, kind HF_PEFT_ADDON) is a PEFT adapter folder kept
// in the state dir; a deployed model (/v1/accounts/<a>/deployedModels) loads
// one onto a deployment created with enableAddons, which serves its base model
// and every addon loaded on it in the same forward passes.
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

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

// Loads every deployed model of engine `d` that its replica does not serve
// yet (a new one, or all of them after a reactivation). Call with cp.mu held
// and the replica up.
void load_addons(ControlPlane& cp, Deployment& d);

inline constexpr const char* kLoraModelKind = "lora_model";
inline constexpr const char* kDeployedModelKind = "deployed_model";

}  // namespace flare::emulator
