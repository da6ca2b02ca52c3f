#pragma once
#include <vector>

#include "emulator/model/model.hpp"

namespace flare::model::detail {

// Throws std::invalid_argument naming the datum index and field, e.g.
// "data[2].target_tokens: length 5 does not match tokens length 6".
void check_data(const Config& cfg, const std::vector<Datum>& data, LossFn loss);

}  // namespace flare::model::detail
