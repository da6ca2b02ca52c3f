#pragma once
// Model weights <-> bf16 safetensors checkpoints (what a bucket snapshot and a
// replica's serving copy hold).
#include <functional>
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

// A PEFT LoRA adapter folder: adapter_config.json and adapter_model.safetensors
// with PEFT's tensor names (base_model.model.<module>.lora_A.weight [r, in],
// ...lora_B.weight [out, r]), bf16 as PEFT writes a bf16 model's adapter.
inline constexpr const char* kAdapterConfigFile = "adapter_config.json";
inline constexpr const char* kAdapterFile = "adapter_model.safetensors";

struct PeftAdapter {
  int rank = 0;
  double alpha = 0;
  bool rslora = false;     // use_rslora: scale alpha / sqrt(r) instead of alpha / r
  std::string base_model;  // base_model_name_or_path
  model::Weights weights;  // model::lora_specs() order; projections the folder leaves out are
                           // zero, lm_head's pair only when it is a target
  float scale() const;
};

// Writes `lora` (lora_specs order) as a PEFT folder in `dir` (created).
void write_peft_adapter(const std::string& dir, const std::string& base_model, int rank,
                        double alpha, const model::Weights& lora);
// Reads a PEFT folder written by flare or another tool, for a model of `cfg`.
// Throws std::invalid_argument naming the file and field or tensor when it is
// not a LoRA adapter flare can serve on that model. `check_base`, when given,
// sees base_model_name_or_path before any tensor is read (and may throw).
PeftAdapter read_peft_adapter(
    const model::Config& cfg, const std::string& dir,
    const std::function<void(const std::string& base_model)>& check_base = nullptr);
bool is_peft_adapter_dir(const std::string& dir);

}  // namespace flare::emulator
