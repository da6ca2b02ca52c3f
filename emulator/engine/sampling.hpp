#pragma once
// Sampling math on one position's logits: the model distribution (log-softmax
// of the raw logits) and the distribution actually sampled from (temperature,
// then top-k, then top-p over what top-k kept, renormalised).
#include <span>
#include <utility>
#include <vector>

#include "emulator/engine/rng.hpp"

namespace flare::engine {

struct SamplingConfig {
  double temperature = 1.0;  // 0 = greedy
  double top_p = 1.0;        // (0, 1]
  int top_k = 0;             // 0 = off
};

struct SampledToken {
  int token = 0;
  double logprob = 0;           // model distribution
  double sampling_logprob = 0;  // sampled distribution (0 when greedy)
};

// Scratch space for one position at a time; reuse one per thread.
class TokenDistribution {
 public:
  struct Entry {
    int token;
    double prob;
  };

  // Computes the model distribution of `logits`; forgets any previous truncation.
  void set_logits(std::span<const float> logits);
  int vocab() const { return static_cast<int>(logprobs_.size()); }
  double logprob(int token) const { return logprobs_[token]; }
  // The n most likely tokens under the model distribution, most likely first
  // (ties: lower token id first).
  std::vector<std::pair<int, float>> top(int n) const;

  // Builds the sampling distribution from the current logits. Greedy keeps
  // only the argmax (lowest id among ties) with probability 1.
  void truncate(const SamplingConfig& c);
  // The kept tokens with renormalised probabilities: ordered by probability
  // (highest first) when top-k or top-p truncated, by token id otherwise.
  std::span<const Entry> support() const { return support_; }
  // The token at cumulative probability u in [0, 1) of the support.
  int pick(double u) const;
  // log of the token's probability in the sampling distribution (-inf when not kept).
  double sampling_logprob(int token) const;

 private:
  std::vector<float> logits_;
  std::vector<double> logprobs_;
  std::vector<double> exp_;  // exp(logit - max logit): unnormalised model probabilities
  double max_logit_ = 0;
  std::vector<Entry> support_;
  std::vector<int> order_;
  // exp((logit - max) / temperature) for kept tokens, 0 for the others
  std::vector<double> weight_;
  double weight_sum_ = 0;
  bool greedy_ = false;
};

// set_logits + truncate + pick with one draw from rng (no draw when greedy).
SampledToken sample_token(TokenDistribution& dist, std::span<const float> logits,
                          const SamplingConfig& c, Rng& rng);

}  // namespace flare::engine
