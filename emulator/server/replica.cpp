#include "emulator/server/replica.hpp"

#include <atomic>
#include <filesystem>

#include "delta/codec.hpp"
#include "emulator/server/api_error.hpp"
#include "emulator/server/bucket.hpp"
#include "emulator/server/state_paths.hpp"
#include "runtime/file_io.hpp"

namespace fs = std::filesystem;

namespace flare::emulator {
namespace {

std::string next_replica_file(const ControlPlane& cp, const std::string& id) {
  static std::atomic<uint64_t> counter{0};
  fs::create_directories(cp.replica_dir(id));
  return cp.replica_dir(id) + "/snapshot-" + std::to_string(static_cast<long long>(now_s() * 1e6)) +
         "-" + std::to_string(counter++) + ".safetensors";
}

void fail_load(Serving& s, const std::string& target, const std::string& message) {
  s.loading = {"error", target, message};
}

// A LoRA snapshot: the adapter folder `source` on top of the base model's
// weights `base`, applied at run time. The replica keeps a copy of the folder.
void run_adapter_load(ControlPlane* cp, const std::string& id,
                      const std::shared_ptr<Serving>& serving, const HotloadRequest& req,
                      std::shared_ptr<const Checkpoint> base, const std::string& source) {
  {
    std::lock_guard lock(cp->mu);
    serving->loading.stage = "loading";
  }
  auto adapter = load_adapter(*serving->cfg, source);
  auto m =
      std::make_shared<const model::Model>(*serving->cfg, to_weights(*serving->cfg, views(*base)));
  std::string dir = next_replica_file(*cp, id);
  dir = dir.substr(0, dir.size() - std::string(".safetensors").size()) + "-adapter";
  fs::create_directories(dir);
  for (const char* f : {kAdapterConfigFile, kAdapterFile})
    fs::copy_file(source + "/" + f, dir + "/" + f, fs::copy_options::overwrite_existing);

  std::lock_guard lock(cp->mu);
  auto it = cp->deployments.find(id);
  if (it == cp->deployments.end() || it->second.serving != serving) {
    fs::remove_all(dir);
    serving->loading_busy = false;
    return;
  }
  Deployment& d = it->second;
  std::vector<std::string> old = {d.row.snapshot_file};
  d.row.snapshot = req.identity;
  d.row.snapshot_file = dir;
  serving->current = base;
  serving->adapter = adapter;
  d.row.update_time = now_s();
  cp->save(d);
  if (serving->phase == Phase::Up) serving->engine->set_model(std::move(m), req.identity, adapter);
  serving->loading = {"idle", req.identity, ""};
  serving->loading_busy = false;
  cp->remove_unreferenced(id, old);
}

void run_load(ControlPlane* cp, std::string id, std::shared_ptr<Serving> serving,
              HotloadRequest req, std::shared_ptr<const Checkpoint> prev, std::string source) {
  try {
    if (req.adapter) return run_adapter_load(cp, id, serving, req, prev, source);
    std::shared_ptr<const Checkpoint> next;
    if (!req.delta) {
      next = std::make_shared<const Checkpoint>(read_checkpoint(source));
    } else {
      auto bytes = read_file(source);
      {
        std::lock_guard lock(cp->mu);
        serving->loading.stage = "loading";
      }
      auto base_views = views(*prev);
      auto ckpt = delta::apply(base_views, bytes);
      next = std::make_shared<const Checkpoint>(std::move(ckpt.tensors));
    }
    {
      std::lock_guard lock(cp->mu);
      serving->loading.stage = "loading";
    }
    auto weights = to_weights(*serving->cfg, views(*next));
    auto m = std::make_shared<const model::Model>(*serving->cfg, weights);
    std::string file = next_replica_file(*cp, id);
    write_checkpoint(file, *next);

    std::lock_guard lock(cp->mu);
    auto it = cp->deployments.find(id);
    if (it == cp->deployments.end() || it->second.serving != serving) {
      fs::remove(file);
      serving->loading_busy = false;
      return;
    }
    Deployment& d = it->second;
    std::vector<std::string> old = {d.row.snapshot_file, d.row.base_file};
    d.row.snapshot = req.identity;
    d.row.snapshot_file = file;
    serving->current = next;
    serving->adapter = nullptr;
    if (!req.delta) {
      d.row.base_snapshot = req.identity;
      d.row.base_file = file;
      serving->base = next;
    }
    d.row.update_time = now_s();
    cp->save(d);
    if (serving->phase == Phase::Up) serving->engine->set_model(std::move(m), req.identity);
    serving->loading = {"idle", req.identity, ""};
    serving->loading_busy = false;
    cp->remove_unreferenced(id, old);
  } catch (const std::exception& e) {
    std::lock_guard lock(cp->mu);
    fail_load(*serving, req.identity,
              "loading snapshot '" + req.identity +
                  "' failed: " + hide_state_dir(cp->state_dir, e.what()) +
                  "; the previous snapshot is still served");
    serving->loading_busy = false;
  }
}

}  // namespace

std::shared_ptr<const model::Adapter> load_adapter(const model::Config& cfg,
                                                   const std::string& dir) {
  PeftAdapter peft = read_peft_adapter(cfg, dir, [&](const std::string& base_model) {
    const model::Config* named = base_model.empty() ? nullptr : resolve_base_model(base_model);
    if (named && named->name != cfg.name)
      throw std::invalid_argument("the adapter was trained on base model '" + base_model +
                                  "', this deployment serves '" + cfg.name + "'");
  });
  return std::make_shared<const model::Adapter>(cfg, peft.weights, peft.scale());
}

void start_hotload(ControlPlane& cp, Deployment& d, const HotloadRequest& req) {
  Serving& s = *d.serving;
  auto reject = [&](const std::string& message) {
    fail_load(s, req.identity, message);
    bad_request(message);
  };
  // A retry whose first attempt went through (its answer was lost) asks for the snapshot
  // this replica already serves or is loading: that succeeds without a second load.
  if (s.loading_busy ? s.loading.target == req.identity
                     : (req.identity == d.row.snapshot && s.loading.stage != "error")) {
    return;
  }
  if (s.loading_busy) {
    throw ApiError(409, "ABORTED",
                   "a hotload of '" + s.loading.target +
                       "' is in progress on this replica; wait for it to finish");
  }
  try {
    check_snapshot_name(req.identity);
  } catch (const std::invalid_argument& e) {
    reject(std::string("identity: ") + e.what());
  }
  std::shared_ptr<const Checkpoint> prev;
  std::string source;
  HotloadRequest load = req;
  if (req.delta) {
    if (req.previous == d.row.snapshot && s.adapter) {
      reject("previous_snapshot_identity '" + req.previous +
             "' is a LoRA adapter; a delta applies to full weights only");
    }
    // Deltas chain: each is made against the snapshot served right before it (the SDK pins
    // previous_snapshot_identity to the last snapshot it hotloaded), never an older base.
    if (req.previous != d.row.snapshot) {
      reject("incremental_snapshot_metadata.previous_snapshot_identity '" + req.previous +
             "' is not the snapshot this replica serves ('" + d.row.snapshot +
             "'); a delta applies only on the snapshot served right before it: hotload the "
             "delta made against '" +
             d.row.snapshot + "', or a full base snapshot");
    }
    prev = s.current;
    source = delta_path(req.bucket_dir, req.identity);
  } else {
    source = base_path(req.bucket_dir, req.identity);
    if (!fs::exists(source) && is_peft_adapter_dir(snapshot_dir(req.bucket_dir, req.identity))) {
      load.adapter = true;  // a LoRA snapshot: served on the base model's own weights
      source = snapshot_dir(req.bucket_dir, req.identity) + "/" + kAdapterFile;
      prev = cp.initial_checkpoint(*s.cfg);
    }
  }
  const std::string kind = req.delta ? "delta" : "base";
  try {
    source = inside_state_dir(cp.state_dir, source, kind + " snapshot '" + req.identity + "'");
  } catch (const ApiError& e) {
    reject(e.what());
  }
  if (!fs::is_regular_file(source)) {
    reject(kind + " snapshot '" + req.identity + "' not found: " + req.identity + "/" +
           (req.delta ? kDeltaFile : kBaseFile) + " does not exist in the bucket");
  }
  s.loading = {"downloading", req.identity, ""};
  s.loading_busy = true;
  if (s.loader.joinable()) s.loader.join();  // the previous load has finished (busy was false)
  if (load.adapter) source = source.substr(0, source.rfind('/'));  // the resolved adapter dir
  s.loader = std::thread(run_load, &cp, d.row.id, d.serving, load, prev, source);
}

}  // namespace flare::emulator
