#pragma once
// Route groups of the emulator's HTTP surface.
#include <string>

#include "emulator/server/control_plane.hpp"
#include "emulator/server/replay_cache.hpp"
#include "emulator/server/router.hpp"

namespace flare::emulator {

struct RouteEnv {
  ControlPlane& cp;
  Faults& faults;
  std::string base_url;
  ReplayCache replays{};  // the trainer's non-idempotent POSTs, by x-request-id
};

void add_deployment_routes(Router& r, RouteEnv& env);   // accounts + deployments
void add_completion_routes(Router& r, RouteEnv& env);   // /inference/v1/completions
void add_openai_routes(Router& r, RouteEnv& env);  // /inference/v1/{chat/completions,models}
void add_hotload_routes(Router& r, RouteEnv& env);      // /hot_load/v1/models/hot_load
void add_trainer_job_routes(Router& r, RouteEnv& env);  // /v1/accounts/<a>/rlorTrainerJobs
void add_trainer_routes(Router& r, RouteEnv& env);      // the trainer gateway /training/v1/...
void add_admin_routes(Router& r, RouteEnv& env);        // /admin/v1/faults

// 404 unless `acct` is the emulator's account.
void check_account(const ControlPlane& cp, const std::string& acct);
std::string iso_time(double epoch_s);

}  // namespace flare::emulator
