#include "emulator/engine/validate.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace flare::engine {

static void fail(const std::string& field, const std::string& why) {
  throw std::invalid_argument(field + ": " + why);
}

void validate_request(const std::vector<int>& prompt, const SamplingParams& p,
                      const model::Config& cfg) {
  if (prompt.empty()) fail("prompt", "must contain at least one token");
  for (size_t i = 0; i < prompt.size(); ++i) {
    if (prompt[i] < 0 || prompt[i] >= cfg.vocab) {
      fail("prompt", "token id " + std::to_string(prompt[i]) + " at index " + std::to_string(i) +
                         " is outside the vocabulary [0, " + std::to_string(cfg.vocab) + ")");
    }
  }
  if (p.n < 1 || p.n > kMaxChoices) {
    fail("n",
         "must be between 1 and " + std::to_string(kMaxChoices) + ", got " + std::to_string(p.n));
  }
  if (p.max_tokens < 0) fail("max_tokens", "must be >= 0, got " + std::to_string(p.max_tokens));
  if (static_cast<long>(prompt.size()) + p.max_tokens > cfg.max_seq) {
    fail("max_tokens", "prompt (" + std::to_string(prompt.size()) + " tokens) + max_tokens (" +
                           std::to_string(p.max_tokens) + ") exceeds the model's context of " +
                           std::to_string(cfg.max_seq) + " tokens");
  }
  if (!(p.temperature >= 0) || !std::isfinite(p.temperature)) {
    fail("temperature", "must be a finite number >= 0, got " + std::to_string(p.temperature));
  }
  if (!(p.top_p > 0 && p.top_p <= 1)) {
    fail("top_p", "must be in (0, 1], got " + std::to_string(p.top_p));
  }
  if (p.top_k < 0) fail("top_k", "must be >= 0 (0 = off), got " + std::to_string(p.top_k));
  if (p.top_logprobs < 0 || p.top_logprobs > cfg.vocab) {
    fail("top_logprobs", "must be between 0 and " + std::to_string(cfg.vocab) + ", got " +
                             std::to_string(p.top_logprobs));
  }
  for (size_t i = 0; i < p.stop.size(); ++i) {
    if (p.stop[i].empty()) fail("stop", "entry " + std::to_string(i) + " is an empty string");
  }
}

}  // namespace flare::engine
