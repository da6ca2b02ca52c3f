#pragma once
// Trainer internals shared by trainer.cpp (training) and trainer_state.cpp
// (save/load).
#include <vector>

#include "emulator/model/layout.hpp"
#include "emulator/model/lora_net.hpp"
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
  // LoRA (lora.rank > 0): the adapter is what trains; master stays frozen.
  LoraConfig lora;
  detail::LoraLayout llay;
  Weights lora_master;                 // fp32, lora_specs order
  std::vector<float> lora16, lorat16;  // bf16-rounded flat copy and its transposes
  float scale = 0;
  // Over the trained parameters: canonical layout, or LoraLayout under LoRA.
  std::vector<float> grad, adam_m, adam_v;
  long step = 0;
  // A forward_backward splits its datums into up to kChunksPerThread x threads
  // chunks: enough for the pool to even out threads slowed by other load.
  static constexpr int kChunksPerThread = 2;
  std::vector<detail::SeqWork<float>> work;    // one per thread at work
  std::vector<std::vector<float>> chunk_grad;  // per chunk

  // Recomputes w16/wt16 from master (and lora16/lorat16 from lora_master).
  void refresh_compute_weights();
  Weights& trained() { return lora.rank > 0 ? lora_master : master; }
  const Weights& trained() const { return lora.rank > 0 ? lora_master : master; }
  const std::vector<size_t>& trained_offsets() const {
    return lora.rank > 0 ? llay.tensor_offset : lay.tensor_offset;
  }
  size_t trained_count() const { return lora.rank > 0 ? llay.total : lay.total; }
  ForwardBackwardResult run(const std::vector<Datum>& data, LossFn loss, const LossConfig& lc,
                            bool backward);
};

}  // namespace flare::model
