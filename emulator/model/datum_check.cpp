#include "emulator/model/datum_check.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace flare::model::detail {

namespace {

[[noreturn]] void fail(size_t i, const char* field, const std::string& what) {
  throw std::invalid_argument("data[" + std::to_string(i) + "]." + field + ": " + what);
}

void check_length(size_t i, const char* field, size_t got, size_t want, bool may_be_empty) {
  if (got == want || (may_be_empty && got == 0)) return;
  fail(i, field,
       "length " + std::to_string(got) + " does not match tokens length " + std::to_string(want));
}

void check_tokens(size_t i, const char* field, const std::vector<int>& tokens, int vocab) {
  for (size_t t = 0; t < tokens.size(); ++t)
    if (tokens[t] < 0 || tokens[t] >= vocab)
      fail(i, field,
           "token " + std::to_string(tokens[t]) + " at position " + std::to_string(t) +
               " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
}

void check_finite(size_t i, const char* field, const std::vector<float>& values) {
  for (size_t t = 0; t < values.size(); ++t)
    if (!std::isfinite(values[t]))
      fail(i, field, "value at position " + std::to_string(t) + " is not finite");
}

}  // namespace

void check_data(const Config& cfg, const std::vector<Datum>& data, LossFn loss) {
  const bool needs_advantages = loss != LossFn::CrossEntropy;
  for (size_t i = 0; i < data.size(); ++i) {
    const Datum& d = data[i];
    const size_t n = d.tokens.size();
    if (n == 0) fail(i, "tokens", "is empty");
    if (n > size_t(cfg.max_seq))
      fail(i, "tokens",
           "length " + std::to_string(n) + " exceeds max_seq " + std::to_string(cfg.max_seq));
    check_length(i, "target_tokens", d.target_tokens.size(), n, false);
    check_length(i, "weights", d.weights.size(), n, true);
    check_length(i, "sampler_logprobs", d.sampler_logprobs.size(), n, true);
    check_length(i, "advantages", d.advantages.size(), n, true);
    check_tokens(i, "tokens", d.tokens, cfg.vocab);
    check_tokens(i, "target_tokens", d.target_tokens, cfg.vocab);
    check_finite(i, "weights", d.weights);
    check_finite(i, "sampler_logprobs", d.sampler_logprobs);
    check_finite(i, "advantages", d.advantages);
    if (needs_advantages) {
      const char* name = loss == LossFn::Ppo ? "ppo" : "importance_sampling";
      if (d.advantages.empty()) fail(i, "advantages", std::string("required by ") + name);
      if (d.sampler_logprobs.empty())
        fail(i, "sampler_logprobs", std::string("required by ") + name);
    }
  }
}

}  // namespace flare::model::detail
