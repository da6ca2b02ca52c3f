#pragma once
// Hotload onto a deployment's replica: checks the request against what the
// replica serves, then loads the snapshot beside the serving weights on a
// background thread and swaps it in atomically.
#include <optional>
#include <string>

#include "emulator/server/control_plane.hpp"

namespace flare::emulator {

struct HotloadRequest {
  std::string identity;
  std::string bucket_dir;  // where the snapshot is read from
  bool delta = false;
  std::string previous;  // delta only: previous_snapshot_identity
  bool adapter = false;  // set by start_hotload: the snapshot is a PEFT adapter folder
};

// The serving form of a PEFT adapter folder (checked against the model config,
// and against `cfg`'s name when the folder names a known base model).
std::shared_ptr<const model::Adapter> load_adapter(const model::Config& cfg,
                                                   const std::string& dir);

// Call with cp.mu held. Throws ApiError (400) for a request that cannot
// succeed, after recording it as the replica's loading error.
void start_hotload(ControlPlane& cp, Deployment& d, const HotloadRequest& req);

}  // namespace flare::emulator
