#pragma once
#include <vector>

#include "emulator/model/model.hpp"

namespace flare::model::detail {

// Throws std::invalid_argument naming the datum index and field, e.g.
// "data[2].target_tokens: length 5 does not match tokens length 6".
// Also checks what the loss and its config need: sampler_logprobs and advantages for the
// policy losses, ref_logprobs for dpo and kl_beta > 0, pairs for dpo.
void check_data(const Config& cfg, const std::vector<Datum>& data, LossFn loss,
                const LossConfig& lc);

}  // namespace flare::model::detail
