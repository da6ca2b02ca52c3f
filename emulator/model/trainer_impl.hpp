#pragma once
// Trainer internals shared by trainer.cpp (training) and trainer_state.cpp
// (save/load).
#include <vector>

#include "emulator/model/layout.hpp"
#include "emulator/model/model.hpp"
#include "emulator/model/sequence.hpp"

namespace flare::model {

struct Trainer::Impl {
  Config cfg;
  detail::Layout lay;
  int threads = 1;
  Weights master;                // fp32, canonical order
  std::vector<float> w16, wt16;  // bf16-rounded flat copy of master, and its transposes
  std::vector<float> rope_cos, rope_sin;
  std::vector<float> grad, adam_m, adam_v;  // flat, canonical layout
  long step = 0;
  std::vector<detail::SeqWork<float>> work;     // per thread
  std::vector<std::vector<float>> thread_grad;  // per thread

  // Recomputes w16/wt16 from master.
  void refresh_compute_weights();
  ForwardBackwardResult run(const std::vector<Datum>& data, LossFn loss, const LossConfig& lc,
                            bool backward);
};

}  // namespace flare::model
