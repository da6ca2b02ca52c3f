#pragma once
// A real tiny-gpt model and reference logprobs computed by a plain prefill.
#include <cmath>
#include <memory>
#include <vector>

#include "emulator/engine/engine.hpp"
#include "emulator/model/model.hpp"

namespace engine_test {

namespace model = flare::model;

inline std::shared_ptr<const model::Model> tiny_model(uint64_t seed = 1) {
  model::Config cfg = *model::builtin("tiny-gpt");
  cfg.seed = seed;
  model::Weights w = model::init_weights(cfg);
  return std::make_shared<const model::Model>(cfg, w);
}

// Log-softmax of the model's logits for each completion token, from one prefill
// of prompt + completion.
inline std::vector<double> reference_logprobs(const model::Model& m, const std::vector<int>& prompt,
                                              const std::vector<int>& completion) {
  std::vector<int> all = prompt;
  all.insert(all.end(), completion.begin(), completion.end());
  const int V = m.config().vocab;
  std::vector<float> logits(all.size() * size_t(V));
  auto cache = m.new_cache();
  m.prefill(*cache, all, logits.data(), nullptr);
  std::vector<double> out;
  for (size_t k = 0; k < completion.size(); ++k) {
    const float* row = logits.data() + (prompt.size() + k - 1) * V;
    double max = row[0];
    for (int i = 1; i < V; ++i) max = std::max(max, double(row[i]));
    double sum = 0;
    for (int i = 0; i < V; ++i) sum += std::exp(double(row[i]) - max);
    out.push_back(double(row[completion[k]]) - max - std::log(sum));
  }
  return out;
}

// The greedy continuation computed directly from the model, one prefill per token.
inline std::vector<int> reference_greedy(const model::Model& m, std::vector<int> seq, int steps) {
  const int V = m.config().vocab;
  std::vector<int> out;
  std::vector<float> last(V);
  for (int s = 0; s < steps; ++s) {
    auto cache = m.new_cache();
    m.prefill(*cache, seq, nullptr, last.data());
    int best = 0;
    for (int i = 1; i < V; ++i)
      if (last[i] > last[best]) best = i;
    out.push_back(best);
    seq.push_back(best);
    if (best == model::kEos) break;
  }
  return out;
}

inline std::vector<int> text_prompt(const char* s) {
  return model::encode_text(s);
}

}  // namespace engine_test
