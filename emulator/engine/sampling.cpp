#include "emulator/engine/sampling.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace flare::engine {

void TokenDistribution::set_logits(std::span<const float> logits) {
  const size_t v = logits.size();
  logits_.assign(logits.begin(), logits.end());
  logprobs_.resize(v);
  exp_.resize(v);
  double max = -std::numeric_limits<double>::infinity();
  for (float x : logits) max = std::max(max, static_cast<double>(x));
  double sum = 0;
  for (size_t i = 0; i < v; ++i) sum += exp_[i] = std::exp(static_cast<double>(logits[i]) - max);
  max_logit_ = max;
  const double log_norm = max + std::log(sum);
  for (size_t i = 0; i < v; ++i) logprobs_[i] = static_cast<double>(logits[i]) - log_norm;
  support_.clear();
  greedy_ = false;
}

std::vector<std::pair<int, float>> TokenDistribution::top(int n) const {
  n = std::clamp(n, 0, vocab());
  std::vector<int> ids(logprobs_.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + n, ids.end(), [&](int a, int b) {
    return logprobs_[a] != logprobs_[b] ? logprobs_[a] > logprobs_[b] : a < b;
  });
  std::vector<std::pair<int, float>> out;
  out.reserve(n);
  for (int i = 0; i < n; ++i) out.emplace_back(ids[i], static_cast<float>(logprobs_[ids[i]]));
  return out;
}

void TokenDistribution::truncate(const SamplingConfig& c) {
  const int v = vocab();
  support_.clear();
  greedy_ = c.temperature == 0;
  if (greedy_) {
    int best = 0;
    for (int i = 1; i < v; ++i)
      if (logits_[i] > logits_[best]) best = i;
    support_.push_back({best, 1.0});
    return;
  }
  // Temperature: the weights exp((l - max) / T) order tokens like the logits.
  weight_.resize(v);
  if (c.temperature == 1.0) {
    std::copy(exp_.begin(), exp_.end(), weight_.begin());
  } else {
    for (int i = 0; i < v; ++i)
      weight_[i] = std::exp((static_cast<double>(logits_[i]) - max_logit_) / c.temperature);
  }

  const bool use_top_k = c.top_k > 0 && c.top_k < v;
  const bool use_top_p = c.top_p < 1.0;
  order_.resize(v);
  std::iota(order_.begin(), order_.end(), 0);
  int kept = v;
  if (use_top_k || use_top_p) {
    const auto by_prob = [&](int a, int b) {
      return logits_[a] != logits_[b] ? logits_[a] > logits_[b] : a < b;
    };
    kept = use_top_k ? c.top_k : v;
    std::partial_sort(order_.begin(), order_.begin() + kept, order_.end(), by_prob);
  }
  auto mass = [&](int count) {
    double sum = 0;
    for (int i = 0; i < count; ++i) sum += weight_[order_[i]];
    return sum;
  };
  weight_sum_ = mass(kept);
  if (use_top_p) {
    // Keep the most likely tokens until their mass reaches top_p: a token is
    // kept when the mass strictly before it is still below top_p.
    const double target = c.top_p * weight_sum_;
    double before = 0;
    int count = 0;
    while (count < kept && before < target) before += weight_[order_[count++]];
    kept = std::max(count, 1);
    weight_sum_ = mass(kept);
  }
  for (int i = kept; i < v; ++i) weight_[order_[i]] = 0;

  support_.reserve(kept);
  for (int i = 0; i < kept; ++i) {
    const int t = order_[i];
    support_.push_back({t, weight_[t] / weight_sum_});
  }
}

int TokenDistribution::pick(double u) const {
  double cum = 0;
  int last_possible = support_.front().token;
  for (const Entry& e : support_) {
    if (e.prob <= 0) continue;
    cum += e.prob;
    last_possible = e.token;
    if (u < cum) return e.token;
  }
  return last_possible;  // u within rounding of 1
}

double TokenDistribution::sampling_logprob(int token) const {
  if (greedy_) {
    return support_.front().token == token ? 0.0 : -std::numeric_limits<double>::infinity();
  }
  if (weight_[token] <= 0) return -std::numeric_limits<double>::infinity();
  return std::log(weight_[token] / weight_sum_);
}

SampledToken sample_token(TokenDistribution& dist, std::span<const float> logits,
                          const SamplingConfig& c, Rng& rng) {
  dist.set_logits(logits);
  dist.truncate(c);
  SampledToken s;
  s.token = c.temperature == 0 ? dist.support().front().token : dist.pick(rng.next_unit());
  s.logprob = dist.logprob(s.token);
  s.sampling_logprob = dist.sampling_logprob(s.token);
  return s;
}

}  // namespace flare::engine
