#pragma once
// Model weights <-> bf16 safetensors checkpoints (what a bucket snapshot and a
// replica's serving copy hold).
#include <string>
#include <vector>

#include "delta/safetensors.hpp"
#include "emulator/model/model.hpp"

namespace flare::emulator {

using Checkpoint = std::vector<delta::Tensor>;  // bf16 tensors in name order

// Rounds to bf16 and packs in name order.
Checkpoint to_checkpoint(const model::Weights& w);
// Unpacks a checkpoint into the model's canonical tensor order, checking every
// name, dtype (BF16 or F32) and shape against the config; throws
// std::invalid_argument naming the tensor.
model::Weights to_weights(const model::Config& cfg, const std::vector<delta::TensorView>& tensors);
std::vector<delta::TensorView> views(const Checkpoint& c);

Checkpoint read_checkpoint(const std::string& path);
void write_checkpoint(const std::string& path, const Checkpoint& c);

}  // namespace flare::emulator
