#pragma once
// In-memory view of every deployment and trainer job, written through to the
// Store on each change, and the background state machine that moves them
// along (CREATING -> READY, DELETING -> gone, replica scale up/down, trainer
// PENDING -> CREATING -> RUNNING).
#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "emulator/engine/engine.hpp"
#include "emulator/model/model.hpp"
#include "emulator/server/addons.hpp"
#include "emulator/server/checkpoint.hpp"
#include "emulator/server/emulator.hpp"
#include "emulator/server/store.hpp"

namespace flare::emulator {

double now_s();  // wall-clock seconds since the epoch

enum class Phase { Down, Starting, Up };

struct LoadingState {
  std::string stage = "idle";  // idle | downloading | loading | error
  std::string target;
  std::string message;
};

// The replica of one deployment: its engine and the weights it serves.
struct Serving {
  const model::Config* cfg = nullptr;
  std::unique_ptr<engine::Engine> engine;
  Phase phase = Phase::Down;
  double ready_at = 0;
  double last_used = 0;
  int inflight = 0;
  std::shared_ptr<const Checkpoint> current;  // full bf16 weights of row.snapshot
  std::shared_ptr<const Checkpoint> base;     // full bf16 weights of row.base_snapshot
  // When row.snapshot is a LoRA adapter: the adapter, applied at run time on
  // top of `current` (the base model's weights).
  std::shared_ptr<const model::Adapter> adapter;
  // An engine (enableAddons): the LoRA addons loaded on the replica, by deployed model id.
  std::map<std::string, std::shared_ptr<const model::Adapter>> addons;
  std::set<std::string> addons_loading;  // deployed model ids whose adapter is being read
  LoadingState loading;
  bool loading_busy = false;
  std::thread loader;
};

struct Deployment {
  DeploymentRow row;
  nlohmann::json spec;
  std::shared_ptr<Serving> serving;
  long min_replicas() const;
  long max_replicas() const;
  std::string base_model() const;
  bool addons_enabled() const;
  double scale_to_zero_window(double fallback) const;  // autoscalingPolicy.scaleToZeroWindow
};

struct TrainerRuntime {
  std::mutex mu;  // one train operation at a time
  const model::Config* cfg = nullptr;
  std::unique_ptr<model::Trainer> trainer;
  std::shared_ptr<const Checkpoint> last_snapshot;  // weights of row.last_base
};

struct TrainerJob {
  TrainerJobRow row;
  nlohmann::json spec;
  std::shared_ptr<TrainerRuntime> rt;
};

// Built-in model config for "accounts/<any>/models/<short>" (or a bare short
// name); nullptr when unknown.
const model::Config* resolve_base_model(const std::string& name);
std::string known_base_models(const std::string& account);

class ControlPlane {
 public:
  ControlPlane(Options opt, Store& store, std::string account, std::string state_dir);
  ~ControlPlane();

  void restore();  // rows -> memory; READY replicas come up with their snapshot
  void start();    // the state machine thread
  void stop();     // stops it and waits for every loader

  // Everything below is guarded by mu.
  std::mutex mu;
  std::map<std::string, Deployment> deployments;
  std::map<std::string, TrainerJob> jobs;
  std::map<std::string, LoraModel> lora_models;
  std::map<std::string, DeployedModel> deployed_models;

  const Options opt;
  Store& store;
  const std::string account;
  const std::string state_dir;

  void save(const Deployment& d);
  void save(const TrainerJob& j);
  void save(const LoraModel& m);
  void save(const DeployedModel& dm);
  void erase(const DeployedModel& dm);  // from memory, the engine and the store
  void bring_up(Deployment& d);         // builds the model from serving->current
  void scale_down(Deployment& d);       // drops the model, keeps the snapshot
  void request_scale_up(Deployment& d);
  std::string replica_dir(const std::string& id) const;
  void remove_crash_leftovers();                              // restore() calls it with mu held
  std::string bucket_dir_for(const std::string& name) const;  // <state>/buckets/<name>
  // The base model's initial weights (written once to <state>/models/).
  std::shared_ptr<const Checkpoint> initial_checkpoint(const model::Config& cfg,
                                                       std::string* path = nullptr);
  // Removes replica files no row refers to any more.
  void remove_unreferenced(const std::string& id, const std::vector<std::string>& files);
  // Serving objects of erased deployments whose loader must still be joined.
  std::vector<std::shared_ptr<Serving>> retired;

  void tick();  // one pass of the state machine (takes mu)
  void kick();  // runs the next pass now rather than at the next interval (without mu)

 private:
  void run();
  std::map<std::string, std::shared_ptr<const Checkpoint>> initial_;
  std::thread thread_;
  std::mutex wake_mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool kicked_ = false;
};

}  // namespace flare::emulator
