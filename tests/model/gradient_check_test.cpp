// Central finite differences in double precision against the hand-written
// backward, run through the very same templated kernels the trainer uses.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "emulator/model/layout.hpp"
#include "emulator/model/losses.hpp"
#include "emulator/model/sequence.hpp"
#include "helpers.hpp"

using namespace flare::model;
using namespace flare::model::detail;

namespace {

struct DoubleNet {
  Config cfg;
  Layout lay;
  std::vector<double> w, wt, cos, sin;
  // With a LoRA rank: an adapter with random A and B (B nonzero, so A has a gradient) on
  // every projection and lm_head.
  LoraLayout llay;
  std::vector<double> lw, lwt;
  LoraNet<double> lora{};

  // `untied`: the weights end with lm_head.weight, a head apart from the embedding.
  explicit DoubleNet(const Config& c, int rank = 0, bool untied = false)
      : cfg(c), lay(make_layout(c, untied)) {
    if (rank > 0) {
      llay = make_lora_layout(c, rank, true);
      std::mt19937_64 rng(5);
      std::normal_distribution<double> normal(0.0, 0.3);
      lw.resize(llay.total);
      for (double& x : lw) x = normal(rng);
      lwt.resize(lw.size());
      lora = {&llay, lw.data(), lwt.data(), 1.5};
    }
    Weights f = model_test::spread_weights(c, 0.3, 11);
    if (untied) {
      Tensor head{untied_head_spec(c).name, untied_head_spec(c).shape, f[0].data};
      for (size_t i = 0; i < head.data.size(); ++i) head.data[i] *= float(1 + i % 3) / 2.0f;
      f.push_back(head);
    }
    const std::vector<float> flat = flatten(lay, f);
    w.assign(flat.begin(), flat.end());
    wt.resize(w.size());
    const RopeTables rope = rope_tables(c);
    cos = rope.cos;
    sin = rope.sin;
    refresh();
  }
  void refresh() {
    transposed_copy(cfg, lay, w.data(), wt.data());
    if (!lw.empty()) transposed_copy(llay, lw.data(), lwt.data());
  }
  NetView<double> view() const {
    return {&cfg, &lay, w.data(), wt.data(), cos.data(), sin.data(), lw.empty() ? nullptr : &lora};
  }
};

std::vector<std::vector<double>> logprobs(const DoubleNet& net, const std::vector<Datum>& data) {
  SeqWork<double> ws;
  std::vector<std::vector<double>> lps(data.size());
  for (size_t i = 0; i < data.size(); ++i) {
    lps[i].resize(data[i].tokens.size());
    sequence_forward(net.view(), data[i].tokens, data[i].target_tokens, ws, lps[i].data());
  }
  return lps;
}

// The batch loss as the trainer computes it (datum_loss, or dpo_pair over pairs, with the
// normalisation's scales); adds the gradient into `grad` (and the adapter's into `lora_grad`)
// when not null. Stop-gradient terms take their value from `frozen` (the logprobs at the
// point differentiated), so the differences see them as the constants they are.
double total_loss(const DoubleNet& net, const std::vector<Datum>& data, LossFn fn,
                  const LossConfig& lc, const std::vector<std::vector<double>>& frozen,
                  std::vector<double>* grad, std::vector<double>* lora_grad = nullptr) {
  const std::vector<std::vector<double>> lps = logprobs(net, data);
  const std::vector<double> scales = datum_scales(fn, lc, data);
  std::vector<std::vector<double>> dl(data.size());
  for (size_t i = 0; i < data.size(); ++i) dl[i].resize(data[i].tokens.size());
  LossStats st;
  if (fn == LossFn::Dpo) {
    for (size_t i = 0; i + 1 < data.size(); i += 2)
      dpo_pair<double>(lc, data[i], data[i + 1], lps[i].data(), lps[i + 1].data(), scales[i],
                       dl[i].data(), dl[i + 1].data(), st);
  } else {
    for (size_t i = 0; i < data.size(); ++i)
      datum_loss<double>(fn, lc, data[i], lps[i].data(), frozen[i].data(), scales[i], dl[i].data(),
                         st);
  }
  if (grad || lora_grad) {
    SeqWork<double> ws;
    for (size_t i = 0; i < data.size(); ++i) {
      std::vector<double> lp(data[i].tokens.size());
      sequence_forward(net.view(), data[i].tokens, data[i].target_tokens, ws, lp.data());
      sequence_backward(net.view(), data[i].tokens, data[i].target_tokens, ws, dl[i].data(),
                        grad ? grad->data() : nullptr, lora_grad ? lora_grad->data() : nullptr);
    }
  }
  return st.loss;
}

std::vector<Datum> make_data(const DoubleNet& net) {
  const std::vector<std::vector<int>> seqs = {{kBos, 72, 101, 108, 108, 111},
                                              {kBos, 3, 250},
                                              {kBos, 120, 121, 122, 257, 40, 41},
                                              {kBos, 9, 8, 7, 6}};
  // Ratios exp(delta) = 1.65, 1.05, 0.61, 0.95, 1.35: inside and outside the
  // PPO clip range, all well away from its kinks at 0.8 and 1.2.
  const double deltas[] = {0.5, 0.05, -0.5, -0.05, 0.3};
  const float advantages[] = {1.0f, -0.7f, 0.5f, -1.2f, 0.8f, -0.3f};
  const float weights[] = {1.0f, 0.5f, 0.0f, 2.0f};
  const double ref_deltas[] = {0.7, -0.2, 0.1, -0.6};  // logp - ref_logp
  std::vector<Datum> data;
  SeqWork<double> ws;
  int k = 0;
  for (const auto& s : seqs) {
    Datum d;
    d.tokens.assign(s.begin(), s.end() - 1);
    d.target_tokens.assign(s.begin() + 1, s.end());
    std::vector<double> lp(d.tokens.size());
    sequence_forward(net.view(), d.tokens, d.target_tokens, ws, lp.data());
    for (size_t t = 0; t < d.tokens.size(); ++t, ++k) {
      d.weights.push_back(weights[k % 4]);
      d.advantages.push_back(advantages[k % 6]);
      d.sampler_logprobs.push_back(float(lp[t] - deltas[k % 5]));
      d.ref_logprobs.push_back(float(lp[t] - ref_deltas[k % 4]));
    }
    data.push_back(d);
  }
  return data;
}

// Central differences of `weights` (the net's full weights or its adapter) tensor by
// tensor against the analytic gradient `grad`: relative error at most 1e-5.
void check_against_differences(DoubleNet& net, const std::vector<Datum>& data, LossFn fn,
                               const LossConfig& lc, const std::vector<std::vector<double>>& frozen,
                               const std::vector<double>& grad,
                               const std::vector<TensorSpec>& specs, std::vector<double>& weights,
                               const std::vector<size_t>& offsets,
                               const std::vector<size_t>& sizes) {
  const double h = 1e-5;
  for (size_t ti = 0; ti < specs.size(); ++ti) {
    const size_t off = offsets[ti], n = sizes[ti];
    double diff_sq = 0, ref_sq = 0;
    for (size_t j = off; j < off + n; ++j) {
      const double saved = weights[j];
      weights[j] = saved + h;
      net.refresh();
      const double up = total_loss(net, data, fn, lc, frozen, nullptr);
      weights[j] = saved - h;
      net.refresh();
      const double down = total_loss(net, data, fn, lc, frozen, nullptr);
      weights[j] = saved;
      const double fd = (up - down) / (2 * h);
      diff_sq += (fd - grad[j]) * (fd - grad[j]);
      ref_sq += fd * fd;
    }
    net.refresh();
    const double rel = std::sqrt(diff_sq) / std::max(std::sqrt(ref_sq), 1e-30);
    INFO(specs[ti].name, ": |fd| = ", std::sqrt(ref_sq), ", relative error ", rel);
    CHECK(ref_sq > 0);
    CHECK(rel <= 1e-5);
  }
}

void check_gradient(LossFn fn, const LossConfig& lc = {}, bool untied = false) {
  const Config c = model_test::micro_config();
  DoubleNet net(c, 0, untied);
  const std::vector<Datum> data = make_data(net);
  const std::vector<std::vector<double>> frozen = logprobs(net, data);
  std::vector<double> grad(net.w.size(), 0.0);
  total_loss(net, data, fn, lc, frozen, &grad);

  std::vector<TensorSpec> specs = parameter_specs(c);
  if (untied) specs.push_back(untied_head_spec(c));
  REQUIRE(specs.size() == net.lay.tensor_offset.size());
  check_against_differences(net, data, fn, lc, frozen, grad, specs, net.w, net.lay.tensor_offset,
                            net.lay.tensor_size);
}

// Every A and B tensor of an adapter on every projection and lm_head, the base frozen
// (its gradient is not computed at all).
void check_lora_gradient(LossFn fn) {
  const Config c = model_test::micro_config();
  DoubleNet net(c, 2);
  const std::vector<Datum> data = make_data(net);
  const std::vector<std::vector<double>> frozen = logprobs(net, data);
  const LossConfig lc;  // clip 0.2 both sides
  std::vector<double> grad(net.lw.size(), 0.0);
  total_loss(net, data, fn, lc, frozen, nullptr, &grad);

  const std::vector<TensorSpec> specs = lora_specs(c, 2, true);
  REQUIRE(specs.size() == net.llay.tensor_offset.size());
  check_against_differences(net, data, fn, lc, frozen, grad, specs, net.lw, net.llay.tensor_offset,
                            net.llay.tensor_size);
}

}  // namespace

TEST_CASE("gradient check: LoRA A and B of every projection and lm_head, every loss") {
  for (LossFn fn : {LossFn::CrossEntropy, LossFn::ImportanceSampling, LossFn::Ppo, LossFn::Grpo,
                    LossFn::DrGrpo, LossFn::Gspo, LossFn::Cispo, LossFn::Reinforce, LossFn::Dpo}) {
    INFO("loss ", loss_name(fn));
    check_lora_gradient(fn);
  }
}

TEST_CASE("gradient check: cross_entropy, every parameter tensor") {
  check_gradient(LossFn::CrossEntropy);
}

TEST_CASE("gradient check: importance_sampling, every parameter tensor") {
  check_gradient(LossFn::ImportanceSampling);
}

TEST_CASE("gradient check: ppo, every parameter tensor") {
  check_gradient(LossFn::Ppo);
}

TEST_CASE("gradient check: an untied lm_head (a merged head adapter), every parameter tensor") {
  check_gradient(LossFn::CrossEntropy, {}, true);
}

TEST_CASE("gradient check: grpo with DAPO's asymmetric clip, per-sequence normalisation") {
  LossConfig lc;
  lc.clip_low = 0.2f;
  lc.clip_high = 0.28f;
  check_gradient(LossFn::Grpo, lc);
}

TEST_CASE("gradient check: dr_grpo over a constant token budget") {
  LossConfig lc;
  lc.normalization = Normalization::Constant;
  lc.normalization_tokens = 7;
  check_gradient(LossFn::DrGrpo, lc);
}

TEST_CASE("gradient check: gspo's sequence-level ratio") {
  check_gradient(LossFn::Gspo);
  LossConfig lc;
  lc.normalization = Normalization::Sequence;
  check_gradient(LossFn::Gspo, lc);
}

TEST_CASE("gradient check: cispo's stop-gradient clipped weight") {
  check_gradient(LossFn::Cispo);
}

TEST_CASE("gradient check: reinforce, token normalisation") {
  LossConfig lc;
  lc.normalization = Normalization::Token;
  check_gradient(LossFn::Reinforce, lc);
}

TEST_CASE("gradient check: dpo pairs") {
  LossConfig lc;
  lc.dpo_beta = 0.5;
  check_gradient(LossFn::Dpo, lc);
}

TEST_CASE("gradient check: truncated importance sampling") {
  LossConfig lc;
  lc.tis_cap = 1.3;
  check_gradient(LossFn::Ppo, lc);
  check_gradient(LossFn::ImportanceSampling, lc);
}

TEST_CASE("gradient check: the KL penalty, each estimator") {
  for (KlEstimator est : {KlEstimator::K1, KlEstimator::K2, KlEstimator::K3}) {
    LossConfig lc;
    lc.kl_beta = 0.3;
    lc.kl_estimator = est;
    check_gradient(LossFn::ImportanceSampling, lc);
  }
}

TEST_CASE("ppo ignores the gradient of tokens whose clipped term is the minimum") {
  const LossConfig lc;  // clip 0.2 both sides
  // ratio 1.65 > 1.2 with A > 0: clipped term smaller, no gradient.
  auto a = token_loss<double>(LossFn::Ppo, lc, 0.0, 1.0, -0.5, 1.0);
  CHECK(a.clipped);
  CHECK(a.dlogp == 0.0);
  CHECK(a.loss == doctest::Approx(-1.2));
  // ratio 0.61 < 0.8 with A > 0: unclipped term smaller, gradient flows.
  auto b = token_loss<double>(LossFn::Ppo, lc, 0.0, 1.0, 0.5, 1.0);
  CHECK(b.clipped);
  CHECK(b.dlogp == doctest::Approx(-std::exp(-0.5)));
  auto ce = token_loss<double>(LossFn::CrossEntropy, lc, -2.0, 0.5, 0.0, 0.0);
  CHECK(ce.loss == doctest::Approx(1.0));
}
