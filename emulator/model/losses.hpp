#pragma once
// The built-in losses and their derivative with respect to the trainer's
// log-probability of each target token (logp). Templated on the float type so the
// trainer (float) and the gradient check (double) run the same code.
//
// Notation: logp = trainer's log π_θ(token), q = sampler's logprob (the behaviour
// policy), A = advantage, r = exp(logp - q), sg(x) = x with no gradient (stop-gradient),
// clip(r) = clamp(r, 1 - ε_low, 1 + ε_high). Sums run over the datum's loss tokens (a
// weight of 0 leaves a position out of every policy loss: the prompt).
#include <algorithm>
#include <cmath>
#include <vector>

#include "emulator/model/model.hpp"

namespace flare::model::detail {

template <class T>
struct TokenLoss {
  T loss = 0;
  T dlogp = 0;  // ∂loss/∂logp
  T ratio = 1;  // exp(logp - sampler_logp); 1 for cross_entropy and reinforce
  bool clipped = false;
};

inline bool uses_ratio_clip(LossFn fn) {
  return fn == LossFn::Ppo || fn == LossFn::Grpo || fn == LossFn::DrGrpo || fn == LossFn::Gspo ||
         fn == LossFn::Cispo;
}

// One token of a per-token loss; logp_sg is logp's value where the loss stops the gradient.
//   cross_entropy:        -w·logp
//   importance_sampling:  -r·A                         (Tinker; gradient -A·r·∇logp)
//   ppo, grpo, dr_grpo:   -min(r·A, clip(r)·A)         (Schulman et al. 2017, PPO; DeepSeekMath
//       2024, GRPO; Liu et al. 2025, Dr. GRPO; DAPO, Yu et al. 2025, sets ε_high > ε_low). No
//       gradient where the clipped term is the minimum. The three differ in normalisation only.
//   cispo:                -sg(clip(r))·A·logp          (MiniMax-M1, Chen et al. 2025: the clipped
//       IS weight scales the REINFORCE gradient, which every token keeps)
//   reinforce:            -A·logp                      (Williams 1992, A = reward - baseline)
template <class T>
TokenLoss<T> token_loss(LossFn fn, const LossConfig& cfg, T logp, T weight, T sampler_logp,
                        T advantage, T logp_sg) {
  TokenLoss<T> r;
  switch (fn) {
    case LossFn::CrossEntropy:
      r.loss = -weight * logp;
      r.dlogp = -weight;
      return r;
    case LossFn::Reinforce:
      r.loss = -advantage * logp;
      r.dlogp = -advantage;
      return r;
    default:
      break;
  }
  const T lo = T(1) - T(cfg.clip_low), hi = T(1) + T(cfg.clip_high);
  if (fn == LossFn::Cispo) {
    r.ratio = std::exp(logp_sg - sampler_logp);
    const T w = std::clamp(r.ratio, lo, hi);
    r.clipped = w != r.ratio;
    r.loss = -w * advantage * logp;
    r.dlogp = -w * advantage;
    return r;
  }
  r.ratio = std::exp(logp - sampler_logp);
  const T unclipped = r.ratio * advantage;
  if (fn == LossFn::ImportanceSampling) {
    r.loss = -unclipped;
    r.dlogp = -unclipped;
    return r;
  }
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

template <class T>
TokenLoss<T> token_loss(LossFn fn, const LossConfig& cfg, T logp, T weight, T sampler_logp,
                        T advantage) {
  return token_loss<T>(fn, cfg, logp, weight, sampler_logp, advantage, logp);
}

// Schulman's estimators of KL(π_θ || π_ref) with δ = logp - ref_logp on a token sampled from
// π_θ ("Approximating KL Divergence", 2020), and their derivative in logp:
//   k1 = δ                   (unbiased, high variance; its gradient has zero mean on-policy)
//   k2 = δ²/2                (biased, low variance; its gradient is KL's on-policy)
//   k3 = exp(-δ) - 1 + δ     (unbiased, low variance, >= 0; GRPO's penalty)
template <class T>
struct KlTerm {
  T value = 0;
  T dlogp = 0;
};
template <class T>
KlTerm<T> kl_term(KlEstimator est, T delta) {
  switch (est) {
    case KlEstimator::K1:
      return {delta, T(1)};
    case KlEstimator::K2:
      return {delta * delta / T(2), delta};
    case KlEstimator::K3:
      break;
  }
  const T e = std::exp(-delta);
  return {e - T(1) + delta, T(1) - e};
}

inline bool is_loss_token(const Datum& d, size_t t) {
  return d.weights.empty() || d.weights[t] != 0.0f;
}
inline long loss_token_count(const Datum& d) {
  long n = 0;
  for (size_t t = 0; t < d.tokens.size(); ++t) n += is_loss_token(d, t) ? 1 : 0;
  return n;
}

inline Normalization effective_normalization(LossFn fn, const LossConfig& c) {
  if (c.normalization != Normalization::Default) return c.normalization;
  return fn == LossFn::Grpo ? Normalization::Sequence : Normalization::Sum;
}

// The factor each datum's summed loss is multiplied by, from the normalisation:
//   sum: 1; token: 1 / Σ_i n_i; sequence: 1 / (N · n_i); constant: 1 / normalization_tokens
// with n_i the loss tokens of datum i and N the datums. gspo's and dpo's terms are per
// sequence (per pair) already, so for them n_i = 1 under sequence, and N counts pairs for dpo.
inline std::vector<double> datum_scales(LossFn fn, const LossConfig& c,
                                        const std::vector<Datum>& data) {
  const Normalization norm = effective_normalization(fn, c);
  std::vector<double> s(data.size(), 1.0);
  if (norm == Normalization::Sum) return s;
  if (norm == Normalization::Constant) {
    std::fill(s.begin(), s.end(), 1.0 / c.normalization_tokens);
    return s;
  }
  const bool per_sequence_terms = fn == LossFn::Gspo || fn == LossFn::Dpo;
  if (norm == Normalization::Token) {
    long total = 0;
    for (const Datum& d : data) total += loss_token_count(d);
    std::fill(s.begin(), s.end(), total > 0 ? 1.0 / double(total) : 0.0);
    return s;
  }
  const double units = fn == LossFn::Dpo ? double(data.size() / 2) : double(data.size());
  for (size_t i = 0; i < data.size(); ++i) {
    const long n = per_sequence_terms ? 1 : loss_token_count(data[i]);
    s[i] = n > 0 && units > 0 ? 1.0 / (units * double(n)) : 0.0;
  }
  return s;
}

struct LossStats {
  double loss = 0;
  double ratio_sum = 0, mismatch_sum = 0;
  long metric_tokens = 0;  // tokens with sampler logprobs and a nonzero advantage
  long clipped = 0;        // of those, clipped (gspo: every token of a clipped sequence)
  long tis_capped = 0;     // of those, whose IS weight hit tis_cap
  double kl_sum = 0;
  long kl_tokens = 0;
  long pairs = 0, pairs_right = 0;  // dpo
  double margin_sum = 0;
};

// gspo (Zheng et al. 2025, GSPO): one ratio per sequence, the geometric mean of the token
// ratios s = exp((1/n) Σ_t (logp_t - q_t)), and the sequence term -min(s·A, clip(s)·A) with A
// the sequence's advantage (the mean of its tokens'). Where s·A is the minimum, each token
// gets ∂/∂logp_t = -A·s/n; none where the clipped term is.
template <class T>
void gspo_sequence(const LossConfig& c, const Datum& d, const T* logp, T scale, T* dlogp,
                   LossStats& st) {
  const size_t len = d.tokens.size();
  T sum = 0, adv = 0;
  long n = 0;
  for (size_t t = 0; t < len; ++t)
    if (is_loss_token(d, t)) {
      sum += logp[t] - T(d.sampler_logprobs[t]);
      adv += T(d.advantages[t]);
      n += 1;
    }
  if (n == 0) return;
  adv /= T(n);
  const T s = std::exp(sum / T(n));
  const T lo = T(1) - T(c.clip_low), hi = T(1) + T(c.clip_high);
  const T unclipped = s * adv, clipped = std::clamp(s, lo, hi) * adv;
  const bool grad = unclipped <= clipped;
  st.loss += double(scale * -(grad ? unclipped : clipped));
  const bool is_clipped = s < lo || s > hi;
  for (size_t t = 0; t < len; ++t) {
    if (!is_loss_token(d, t)) continue;
    if (grad) dlogp[t] += scale * -adv * s / T(n);
    if (is_clipped && d.advantages[t] != 0.0f) st.clipped += 1;
  }
}

// Every loss but dpo on one datum: adds its (scaled) loss and metrics into `st` and writes
// ∂loss/∂logp into dlogp. logp_sg is logp's value wherever a loss stops the gradient (the
// trainer passes logp itself; the gradient check holds it at the point it differentiates).
//
// Truncated importance sampling (tis_cap = C > 0; Yao et al. 2025, "Your Efficient RL
// Framework Secretly Brings You Off-Policy RL Training"): the sampler is only the behaviour
// policy: each token's term is taken against the trainer itself (q := sg(logp), so r = 1 with
// r's gradient) and weighted by sg(min(exp(logp - q), C)).
//
// KL penalty (kl_beta = β > 0): β·k(logp - ref_logp) is added on every loss token, scaled as
// the loss; `kl` reports mean k over those tokens whether or not β > 0.
template <class T>
void datum_loss(LossFn fn, const LossConfig& c, const Datum& d, const T* logp, const T* logp_sg,
                T scale, T* dlogp, LossStats& st) {
  const size_t len = d.tokens.size();
  std::fill(dlogp, dlogp + len, T(0));
  const bool has_q = !d.sampler_logprobs.empty();
  if (fn == LossFn::Gspo) gspo_sequence(c, d, logp, scale, dlogp, st);
  for (size_t t = 0; t < len; ++t) {
    const T adv = d.advantages.empty() ? T(0) : T(d.advantages[t]);
    const T q = has_q ? T(d.sampler_logprobs[t]) : T(0);
    const bool metric = has_q && (d.advantages.empty() || adv != T(0));
    if (metric) {
      const double log_r = double(logp_sg[t]) - double(q);
      st.ratio_sum += std::exp(log_r);
      st.mismatch_sum += std::exp(log_r) - 1.0 - log_r;
      st.metric_tokens += 1;
    }
    const bool counted = fn == LossFn::CrossEntropy || is_loss_token(d, t);
    if (fn != LossFn::Gspo && counted) {
      T w = 1, q_eff = q;
      if (c.tis_cap > 0) {
        const T is = std::exp(logp_sg[t] - q);
        w = std::min(is, T(c.tis_cap));
        q_eff = logp_sg[t];
        if (metric && is > T(c.tis_cap)) st.tis_capped += 1;
      }
      const T weight = d.weights.empty() ? T(1) : T(d.weights[t]);
      const TokenLoss<T> tl = token_loss<T>(fn, c, logp[t], weight, q_eff, adv, logp_sg[t]);
      st.loss += double(scale * w * tl.loss);
      dlogp[t] += scale * w * tl.dlogp;
      if (metric && tl.clipped) st.clipped += 1;
    }
    if (!d.ref_logprobs.empty() && is_loss_token(d, t)) {
      const KlTerm<T> k = kl_term<T>(c.kl_estimator, logp[t] - T(d.ref_logprobs[t]));
      st.kl_sum += double(k.value);
      st.kl_tokens += 1;
      if (c.kl_beta > 0) {
        st.loss += double(scale * T(c.kl_beta) * k.value);
        dlogp[t] += scale * T(c.kl_beta) * k.dlogp;
      }
    }
  }
}

// dpo (Rafailov et al. 2023): for a pair (chosen c, rejected r) with
// Δ = Σ_t (logp_t - ref_logp_t) over each sequence's loss tokens and z = β·(Δ_c - Δ_r),
// loss = -log σ(z); ∂loss/∂z = σ(z) - 1, so ∂/∂logp_t = β·(σ(z) - 1) on the chosen tokens
// and -β·(σ(z) - 1) on the rejected ones.
template <class T>
void dpo_pair(const LossConfig& c, const Datum& chosen, const Datum& rejected, const T* lp_c,
              const T* lp_r, T scale, T* d_c, T* d_r, LossStats& st) {
  auto delta = [](const Datum& d, const T* lp) {
    T s = 0;
    for (size_t t = 0; t < d.tokens.size(); ++t)
      if (is_loss_token(d, t)) s += lp[t] - T(d.ref_logprobs[t]);
    return s;
  };
  const T beta = T(c.dpo_beta);
  const T z = beta * (delta(chosen, lp_c) - delta(rejected, lp_r));
  // -log σ(z) = log(1 + exp(-z)), computed without overflow for |z| large.
  const T loss = z > 0 ? std::log1p(std::exp(-z)) : -z + std::log1p(std::exp(z));
  const T dz = -T(1) / (T(1) + std::exp(z));  // σ(z) - 1
  st.loss += double(scale * loss);
  st.pairs += 1;
  st.pairs_right += z > 0 ? 1 : 0;
  st.margin_sum += double(z);
  auto fill = [&](const Datum& d, T g, T* out) {
    for (size_t t = 0; t < d.tokens.size(); ++t) out[t] = is_loss_token(d, t) ? g : T(0);
  };
  fill(chosen, scale * beta * dz, d_c);
  fill(rejected, -scale * beta * dz, d_r);
}

}  // namespace flare::model::detail
