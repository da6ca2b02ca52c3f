#include "emulator/server/control_plane.hpp"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "emulator/server/replica.hpp"
#include "emulator/server/trainer_jobs.hpp"

namespace fs = std::filesystem;

namespace flare::emulator {

double now_s() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

const model::Config* resolve_base_model(const std::string& name) {
  std::string short_name = name;
  auto pos = name.rfind("/models/");
  if (pos != std::string::npos) {
    if (name.rfind("accounts/", 0) != 0) return nullptr;
    short_name = name.substr(pos + 8);
  } else if (name.find('/') != std::string::npos) {
    return nullptr;
  }
  return model::builtin(short_name);
}

std::string known_base_models(const std::string& account) {
  std::string out;
  for (const auto& n : model::builtin_names()) {
    out += (out.empty() ? "" : ", ") + ("accounts/" + account + "/models/" + n);
  }
  return out;
}

long Deployment::min_replicas() const {
  return spec.value("minReplicaCount", 0L);
}
long Deployment::max_replicas() const {
  return spec.value("maxReplicaCount", 1L);
}
std::string Deployment::base_model() const {
  return spec.value("baseModel", std::string());
}
bool Deployment::addons_enabled() const {
  auto it = spec.find("enableAddons");
  return it != spec.end() && it->is_boolean() && it->get<bool>();
}
double Deployment::scale_to_zero_window(double fallback) const {
  // A protobuf Duration in JSON: "<seconds>s".
  auto pol = spec.find("autoscalingPolicy");
  if (pol == spec.end() || !pol->is_object()) return fallback;
  auto w = pol->find("scaleToZeroWindow");
  if (w == pol->end() || !w->is_string()) return fallback;
  try {
    return std::stod(w->get<std::string>());
  } catch (const std::exception&) {
    return fallback;
  }
}

ControlPlane::ControlPlane(Options o, Store& s, std::string acct, std::string dir)
    : opt(std::move(o)), store(s), account(std::move(acct)), state_dir(std::move(dir)) {
  fs::create_directories(state_dir + "/buckets");
  fs::create_directories(state_dir + "/replicas");
  fs::create_directories(state_dir + "/models");
}

ControlPlane::~ControlPlane() {
  stop();
}

std::string ControlPlane::replica_dir(const std::string& id) const {
  return state_dir + "/replicas/" + id;
}

std::string ControlPlane::bucket_dir_for(const std::string& name) const {
  // Callers pass "trainer-<id>" or "deployment-<id>" with a checked id; a name
  // that could leave the buckets folder is a bug, refused rather than used.
  if (name.empty() || name.find('/') != std::string::npos || name.find("..") != std::string::npos)
    throw std::invalid_argument("bucket name '" + name + "' is not a single folder name");
  return state_dir + "/buckets/" + name;
}

std::shared_ptr<const Checkpoint> ControlPlane::initial_checkpoint(const model::Config& cfg,
                                                                   std::string* path) {
  std::string file = state_dir + "/models/" + cfg.name + ".safetensors";
  if (path) *path = file;
  auto it = initial_.find(cfg.name);
  if (it != initial_.end()) return it->second;
  auto ckpt = std::make_shared<const Checkpoint>(to_checkpoint(model::init_weights(cfg)));
  if (!fs::exists(file)) write_checkpoint(file, *ckpt);
  initial_[cfg.name] = ckpt;
  return ckpt;
}

void ControlPlane::save(const Deployment& d) {
  DeploymentRow row = d.row;
  row.spec = d.spec.dump();
  store.put(row);
}

void ControlPlane::save(const TrainerJob& j) {
  TrainerJobRow row = j.row;
  row.spec = j.spec.dump();
  store.put(row);
}

void ControlPlane::save(const LoraModel& m) {
  store.put_record(kLoraModelKind, m.id, m.to_record().dump());
}

void ControlPlane::save(const DeployedModel& dm) {
  store.put_record(kDeployedModelKind, dm.id, dm.to_record().dump());
}

void ControlPlane::erase(const DeployedModel& dm) {
  const std::string id = dm.id;  // dm is the map's element
  auto it = deployments.find(dm.deployment_id);
  if (it != deployments.end()) it->second.serving->addons.erase(id);
  store.erase_record(kDeployedModelKind, id);
  deployed_models.erase(id);
}

void ControlPlane::bring_up(Deployment& d) {
  Serving& s = *d.serving;
  if (!s.cfg) return;
  if (!s.current) {
    std::string path;
    s.current = s.base = initial_checkpoint(*s.cfg, &path);
  }
  auto weights = to_weights(*s.cfg, views(*s.current));
  auto m = std::make_shared<const model::Model>(*s.cfg, weights);
  if (!s.engine) s.engine = std::make_unique<engine::Engine>();
  s.engine->set_model(std::move(m), d.row.snapshot, s.adapter);
  s.phase = Phase::Up;
  s.last_used = now_s();
}

void ControlPlane::scale_down(Deployment& d) {
  Serving& s = *d.serving;
  if (s.engine) s.engine->set_model(nullptr, "");
  s.addons.clear();
  s.phase = Phase::Down;
}

void ControlPlane::request_scale_up(Deployment& d) {
  Serving& s = *d.serving;
  if (s.phase != Phase::Down) return;
  s.phase = Phase::Starting;
  s.ready_at = now_s() + opt.provision_delay_s;
}

void ControlPlane::remove_unreferenced(const std::string& id,
                                       const std::vector<std::string>& files) {
  auto it = deployments.find(id);
  for (const auto& f : files) {
    if (f.empty() || f.rfind(replica_dir(id) + "/", 0) != 0) continue;
    if (it != deployments.end() &&
        (it->second.row.snapshot_file == f || it->second.row.base_file == f)) {
      continue;
    }
    std::error_code ec;
    fs::remove_all(f, ec);  // a LoRA snapshot's copy is a folder
  }
}

// A kill between writing a file and recording it leaves files nothing refers to: a replica
// checkpoint the database never named, a deleted deployment's replica dir, a trainer state's
// temporary file. Only the emulator writes under replicas/ and trainer_states/.
void ControlPlane::remove_crash_leftovers() {
  std::error_code ec;
  for (const auto& dir : fs::directory_iterator(state_dir + "/replicas", ec)) {
    std::string id = dir.path().filename().string();
    auto it = deployments.find(id);
    if (it == deployments.end()) {
      fs::remove_all(dir.path(), ec);
      continue;
    }
    std::vector<std::string> files;
    for (const auto& f : fs::directory_iterator(dir.path(), ec)) files.push_back(f.path().string());
    remove_unreferenced(id, files);
  }
  for (const auto& f : fs::recursive_directory_iterator(state_dir + "/trainer_states", ec)) {
    if (f.is_regular_file(ec) && f.path().filename().string().find(".tmp-") != std::string::npos)
      fs::remove(f.path(), ec);
  }
}

void ControlPlane::restore() {
  std::lock_guard lock(mu);
  for (auto& row : store.deployments()) {
    Deployment d;
    d.row = row;
    d.spec = nlohmann::json::parse(row.spec);
    d.serving = std::make_shared<Serving>();
    d.serving->cfg = resolve_base_model(d.base_model());
    std::string id = row.id;
    auto& slot = deployments[id] = std::move(d);
    if (slot.row.state != "READY" || !slot.serving->cfg) continue;
    Serving& s = *slot.serving;
    try {
      std::string initial_path;
      auto initial = initial_checkpoint(*s.cfg, &initial_path);
      auto load = [&](const std::string& file) {
        return file == initial_path ? initial
                                    : std::make_shared<const Checkpoint>(read_checkpoint(file));
      };
      s.base = load(slot.row.base_file);
      if (fs::is_directory(slot.row.snapshot_file)) {  // a LoRA adapter on the base model
        s.current = initial;
        s.adapter = load_adapter(*s.cfg, slot.row.snapshot_file);
      } else {
        s.current =
            slot.row.snapshot_file == slot.row.base_file ? s.base : load(slot.row.snapshot_file);
      }
      if (slot.max_replicas() > 0) bring_up(slot);
    } catch (const std::exception& e) {
      slot.row.state = "FAILED";
      slot.row.message = "could not restore snapshot '" + slot.row.snapshot + "': " + e.what();
      save(slot);
    }
  }
  for (auto& [id, body] : store.records(kLoraModelKind))
    lora_models[id] = LoraModel::from_record(id, nlohmann::json::parse(body));
  for (auto& [id, body] : store.records(kDeployedModelKind))
    deployed_models[id] = DeployedModel::from_record(id, nlohmann::json::parse(body));
  remove_crash_leftovers();
  for (auto& row : store.trainer_jobs()) {
    TrainerJob j;
    j.row = row;
    j.spec = nlohmann::json::parse(row.spec);
    j.rt = std::make_shared<TrainerRuntime>();
    auto& slot = jobs[row.id] = std::move(j);
    if (slot.row.state == "JOB_STATE_RUNNING") start_trainer(*this, slot);
  }
}

void ControlPlane::tick() {
  std::vector<std::shared_ptr<Serving>> to_join;
  std::vector<AddonLoad> addon_loads;
  {
    std::lock_guard lock(mu);
    double now = now_s();
    for (auto it = deployments.begin(); it != deployments.end();) {
      Deployment& d = it->second;
      Serving& s = *d.serving;
      if (d.row.state == "CREATING" && now >= d.row.deadline) {
        if (!s.cfg) {
          d.row.state = "FAILED";
          d.row.message = "unknown base model '" + d.base_model() +
                          "' (built-in models: " + known_base_models(account) + ")";
        } else {
          d.row.state = "READY";
          d.row.message.clear();
          if (d.max_replicas() > 0) {
            try {
              bring_up(d);
            } catch (const std::exception& e) {
              d.row.state = "FAILED";
              d.row.message = std::string("replica failed to start: ") + e.what();
            }
          }
        }
        d.row.update_time = now;
        save(d);
      } else if (d.row.state == "DELETING" && now >= d.row.deadline && s.inflight == 0) {
        store.erase_deployment(d.row.id);
        for (auto dm = deployed_models.begin(); dm != deployed_models.end();) {
          auto next = std::next(dm);
          if (dm->second.deployment_id == d.row.id) erase(dm->second);
          dm = next;
        }
        scale_down(d);
        std::error_code ec;
        fs::remove_all(replica_dir(d.row.id), ec);
        retired.push_back(d.serving);
        it = deployments.erase(it);
        continue;
      } else if (d.row.state == "READY") {
        if (s.phase == Phase::Down && d.max_replicas() > 0 && d.min_replicas() > 0) {
          request_scale_up(d);
        }
        if (s.phase == Phase::Starting && now >= s.ready_at) {
          try {
            bring_up(d);
          } catch (const std::exception& e) {
            s.phase = Phase::Down;
            s.loading = {"error", d.row.snapshot,
                         std::string("replica failed to start: ") + e.what()};
          }
        } else if (s.phase == Phase::Up && d.min_replicas() == 0 && s.inflight == 0 &&
                   !s.loading_busy &&
                   now - s.last_used >= d.scale_to_zero_window(opt.idle_timeout_s)) {
          scale_down(d);
        }
        if (s.phase == Phase::Up) {
          auto loads = take_addon_loads(*this, d);
          addon_loads.insert(addon_loads.end(), loads.begin(), loads.end());
        }
      }
      ++it;
    }
    advance_trainer_jobs(*this, now);
    for (auto it = retired.begin(); it != retired.end();) {
      if (!(*it)->loading_busy) {
        to_join.push_back(*it);
        it = retired.erase(it);
      } else {
        ++it;
      }
    }
  }
  run_addon_loads(*this, addon_loads);
  for (auto& s : to_join) {
    if (s->loader.joinable()) s->loader.join();
  }
}

void ControlPlane::start() {
  {
    std::lock_guard lock(wake_mu_);
    stopping_ = false;
  }
  thread_ = std::thread([this] { run(); });
}

void ControlPlane::run() {
  std::unique_lock lock(wake_mu_);
  while (!stopping_) {
    lock.unlock();
    try {
      tick();
    } catch (const std::exception& e) {
      // A failed write (disk full, ...) must not end the state machine; the
      // next pass retries from the in-memory state.
      std::fprintf(stderr, "flare emulator: state machine: %s\n", e.what());
    }
    lock.lock();
    wake_.wait_for(lock, std::chrono::milliseconds(20), [this] { return stopping_ || kicked_; });
    kicked_ = false;
  }
}

void ControlPlane::kick() {
  {
    std::lock_guard lock(wake_mu_);
    kicked_ = true;
  }
  wake_.notify_all();
}

void ControlPlane::stop() {
  {
    std::lock_guard lock(wake_mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::vector<std::shared_ptr<Serving>> all;
  {
    std::lock_guard lock(mu);
    for (auto& [id, d] : deployments) all.push_back(d.serving);
    for (auto& s : retired) all.push_back(s);
    retired.clear();
  }
  for (auto& s : all) {
    if (s->loader.joinable()) s->loader.join();
  }
}

}  // namespace flare::emulator
