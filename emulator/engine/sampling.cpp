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
  double max = -std::numeric_limits<double>::infinity();
  for (float x : logits) max = std::max(max, static_cast<double>(x));
  double sum = 0;
  for (float x : logits) sum += std::exp(static_cast<double>(x) - max);
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
    support_log_norm_ = 0;
    return;
  }
  scaled_.resize(v);
  for (int i = 0; i < v; ++i) scaled_[i] = static_cast<double>(logits_[i]) / c.temperature;

  const bool use_top_k = c.top_k > 0 && c.top_k < v;
  const bool use_top_p = c.top_p < 1.0;
  order_.resize(v);
  std::iota(order_.begin(), order_.end(), 0);
  int kept = v;
  if (use_top_k || use_top_p) {
    const auto by_prob = [&](int a, int b) {
      return scaled_[a] != scaled_[b] ? scaled_[a] > scaled_[b] : a < b;
    };
    kept = use_top_k ? c.top_k : v;
    std::partial_sort(order_.begin(), order_.begin() + kept, order_.end(), by_prob);
  }

  // Softmax over the first `kept` entries of order_.
  auto normalise = [&](int count) {
    double max = -std::numeric_limits<double>::infinity();
    for (int i = 0; i < count; ++i) max = std::max(max, scaled_[order_[i]]);
    double sum = 0;
    for (int i = 0; i < count; ++i) sum += std::exp(scaled_[order_[i]] - max);
    support_log_norm_ = max + std::log(sum);
  };
  normalise(kept);

  if (use_top_p) {
    // Keep the most likely tokens until their mass reaches top_p: a token is
    // kept when the mass strictly before it is still below top_p.
    double before = 0;
    int count = 0;
    while (count < kept && before < c.top_p) {
      before += std::exp(scaled_[order_[count]] - support_log_norm_);
      ++count;
    }
    kept = std::max(count, 1);
    normalise(kept);
  }

  support_.reserve(kept);
  for (int i = 0; i < kept; ++i) {
    const int t = order_[i];
    support_.push_back({t, std::exp(scaled_[t] - support_log_norm_)});
  }
}

int TokenDistribution::pick(double u) const {
  double cum = 0;
  for (const Entry& e : support_) {
    cum += e.prob;
    if (u < cum) return e.token;
  }
  return support_.back().token;  // u within rounding of 1
}

double TokenDistribution::sampling_logprob(int token) const {
  if (greedy_) {
    return support_.front().token == token ? 0.0 : -std::numeric_limits<double>::infinity();
  }
  for (const Entry& e : support_)
    if (e.token == token) return scaled_[token] - support_log_norm_;
  return -std::numeric_limits<double>::infinity();
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
