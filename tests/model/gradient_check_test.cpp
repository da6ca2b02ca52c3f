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

// Σ over datums and tokens of the per-token loss; adds the gradient into
// `grad` (and the adapter's into `lora_grad`) when not null.
double total_loss(const DoubleNet& net, const std::vector<Datum>& data, LossFn fn,
                  const LossConfig& lc, std::vector<double>* grad,
                  std::vector<double>* lora_grad = nullptr) {
  SeqWork<double> ws;
  double loss = 0;
  for (const Datum& d : data) {
    const size_t n = d.tokens.size();
    std::vector<double> lp(n), dlogp(n);
    sequence_forward(net.view(), d.tokens, d.target_tokens, ws, lp.data());
    for (size_t t = 0; t < n; ++t) {
      const double weight = d.weights.empty() ? 1.0 : d.weights[t];
      const double slp = d.sampler_logprobs.empty() ? 0.0 : d.sampler_logprobs[t];
      const double adv = d.advantages.empty() ? 0.0 : d.advantages[t];
      const TokenLoss<double> tl = token_loss<double>(fn, lc, lp[t], weight, slp, adv);
      loss += tl.loss;
      dlogp[t] = tl.dlogp;
    }
    if (grad || lora_grad)
      sequence_backward(net.view(), d.tokens, d.target_tokens, ws, dlogp.data(),
                        grad ? grad->data() : nullptr, lora_grad ? lora_grad->data() : nullptr);
  }
  return loss;
}

std::vector<Datum> make_data(const DoubleNet& net) {
  const std::vector<std::vector<int>> seqs = {
      {kBos, 72, 101, 108, 108, 111}, {kBos, 3, 250}, {kBos, 120, 121, 122, 257, 40, 41}};
  // Ratios exp(delta) = 1.65, 1.05, 0.61, 0.95, 1.35: inside and outside the
  // PPO clip range, all well away from its kinks at 0.8 and 1.2.
  const double deltas[] = {0.5, 0.05, -0.5, -0.05, 0.3};
  const float advantages[] = {1.0f, -0.7f, 0.5f, -1.2f, 0.8f, -0.3f};
  const float weights[] = {1.0f, 0.5f, 0.0f, 2.0f};
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
    }
    data.push_back(d);
  }
  return data;
}

// Central differences of `weights` (the net's full weights or its adapter) tensor by
// tensor against the analytic gradient `grad`: relative error at most 1e-5.
void check_against_differences(DoubleNet& net, const std::vector<Datum>& data, LossFn fn,
                               const LossConfig& lc, const std::vector<double>& grad,
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
      const double up = total_loss(net, data, fn, lc, nullptr);
      weights[j] = saved - h;
      net.refresh();
      const double down = total_loss(net, data, fn, lc, nullptr);
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

void check_gradient(LossFn fn, bool untied = false) {
  const Config c = model_test::micro_config();
  DoubleNet net(c, 0, untied);
  const std::vector<Datum> data = make_data(net);
  const LossConfig lc{0.2f, 0.2f};
  std::vector<double> grad(net.w.size(), 0.0);
  total_loss(net, data, fn, lc, &grad);

  std::vector<TensorSpec> specs = parameter_specs(c);
  if (untied) specs.push_back(untied_head_spec(c));
  REQUIRE(specs.size() == net.lay.tensor_offset.size());
  check_against_differences(net, data, fn, lc, grad, specs, net.w, net.lay.tensor_offset,
                            net.lay.tensor_size);
}

// Every A and B tensor of an adapter on every projection, the base frozen (its
// gradient is not computed at all).
void check_lora_gradient(LossFn fn) {
  const Config c = model_test::micro_config();
  DoubleNet net(c, 2);
  const std::vector<Datum> data = make_data(net);
  const LossConfig lc{0.2f, 0.2f};
  std::vector<double> grad(net.lw.size(), 0.0);
  total_loss(net, data, fn, lc, nullptr, &grad);

  const std::vector<TensorSpec> specs = lora_specs(c, 2, true);
  REQUIRE(specs.size() == net.llay.tensor_offset.size());
  check_against_differences(net, data, fn, lc, grad, specs, net.lw, net.llay.tensor_offset,
                            net.llay.tensor_size);
}

}  // namespace

TEST_CASE("gradient check: LoRA A and B of every projection and lm_head, every loss") {
  check_lora_gradient(LossFn::CrossEntropy);
  check_lora_gradient(LossFn::ImportanceSampling);
  check_lora_gradient(LossFn::Ppo);
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
  check_gradient(LossFn::CrossEntropy, true);
}

TEST_CASE("ppo ignores the gradient of tokens whose clipped term is the minimum") {
  const LossConfig lc{0.2f, 0.2f};
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
