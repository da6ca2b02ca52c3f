#pragma once
// Checks a completion request against the serving model before any work starts.
#include <vector>

#include "emulator/engine/engine.hpp"

namespace flare::engine {

constexpr int kMaxChoices = 128;

// Throws std::invalid_argument whose message starts with the offending field.
void validate_request(const std::vector<int>& prompt, const SamplingParams& p,
                      const model::Config& cfg);

}  // namespace flare::engine
