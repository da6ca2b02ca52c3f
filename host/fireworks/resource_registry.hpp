#pragma once
// The cloud resources this process created and has not released yet:
// deployments it created or scaled up, trainer jobs it created. RestCall notes
// every finished control-plane call here, so the registry follows what the
// script did without any Lua. When the process must end without running its
// Lua cleanups (a third Ctrl-C, the SIGTERM grace period over, a Lua panic),
// the emergency hook (runtime/interrupt.hpp) scales each deployment to zero and
// deletes each trainer job with plain HTTP calls bounded in time.
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fireworks/connection.hpp"

namespace flare::fireworks::resources {

enum class Kind { Deployment, TrainerJob };

struct Resource {
  Kind kind;
  std::string name;  // "accounts/<a>/deployments/<id>" or "accounts/<a>/rlorTrainerJobs/<id>"
  std::shared_ptr<const Connection> connection;
};

// Follows one finished control-plane call: its method, path (with the query)
// and JSON body, and the final HTTP status. Calls that create, scale or
// delete resources add or remove them; every other call is ignored.
void note(const std::shared_ptr<const Connection>& connection, std::string_view method,
          std::string_view path, std::string_view body, int status);

std::vector<Resource> snapshot();
void forget_all();

struct ReleaseResult {
  std::size_t released = 0;
  std::size_t failed = 0;
};
// Scales every deployment to zero and deletes every trainer job, all requests at
// once on a client of its own (any thread; not interrupted by signals), each
// within timeout_s. Prints one line per resource on stderr (names, never keys).
ReleaseResult release_all(double timeout_s);

}  // namespace flare::fireworks::resources
