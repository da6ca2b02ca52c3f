#pragma once
// Trainer jobs (rlorTrainerJobs): lifecycle PENDING -> CREATING -> RUNNING and
// the fp32 trainer each running job owns.
#include "emulator/server/control_plane.hpp"

namespace flare::emulator {

// Builds the job's trainer from its base model's initial weights (cp.mu held).
void start_trainer(ControlPlane& cp, TrainerJob& job);
// Moves jobs whose phase deadline passed to their next state (cp.mu held).
void advance_trainer_jobs(ControlPlane& cp, double now);
nlohmann::json trainer_job_json(const ControlPlane& cp, const TrainerJob& job,
                                const std::string& base_url);

}  // namespace flare::emulator
