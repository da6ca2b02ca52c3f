#pragma once
// Per-token terms of the Tinker losses and their derivative with respect to the
// trainer's log-probability of the target token. Losses are sums over tokens.
#include <algorithm>
#include <cmath>

#include "emulator/model/model.hpp"

namespace flare::model::detail {

template <class T>
struct TokenLoss {
  T loss = 0;
  T dlogp = 0;  // ∂loss/∂logp
  T ratio = 1;  // exp(logp - sampler_logp); 1 for cross_entropy
  bool clipped = false;
};

// cross_entropy: -w·logp.
// importance_sampling: -ratio·A, gradient -A·ratio·∇logp.
// ppo: -min(ratio·A, clip(ratio, 1-lo, 1+hi)·A); no gradient where the clipped
// term is the minimum.
template <class T>
TokenLoss<T> token_loss(LossFn fn, const LossConfig& cfg, T logp, T weight, T sampler_logp,
                        T advantage) {
  TokenLoss<T> r;
  if (fn == LossFn::CrossEntropy) {
    r.loss = -weight * logp;
    r.dlogp = -weight;
    return r;
  }
  r.ratio = std::exp(logp - sampler_logp);
  const T unclipped = r.ratio * advantage;
  if (fn == LossFn::ImportanceSampling) {
    r.loss = -unclipped;
    r.dlogp = -unclipped;
    return r;
  }
  const T lo = T(1) - T(cfg.clip_low), hi = T(1) + T(cfg.clip_high);
  const T clipped = std::clamp(r.ratio, lo, hi) * advantage;
  r.clipped = r.ratio < lo || r.ratio > hi;
  if (unclipped <= clipped) {
    r.loss = -unclipped;
    r.dlogp = -unclipped;
  } else {
    r.loss = -clipped;
    r.dlogp = 0;
  }
  return r;
}

}  // namespace flare::model::detail
