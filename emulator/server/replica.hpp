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
};

// Call with cp.mu held. Throws ApiError (400) for a request that cannot
// succeed, after recording it as the replica's loading error.
void start_hotload(ControlPlane& cp, Deployment& d, const HotloadRequest& req);

}  // namespace flare::emulator
