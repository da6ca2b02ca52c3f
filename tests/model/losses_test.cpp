// Each built-in loss against values computed by hand from its paper's definition.
#include "emulator/model/losses.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <stdexcept>
#include <string>

using namespace flare::model;
using namespace flare::model::detail;

namespace {

// A datum of `n` positions whose values the test sets; tokens themselves do not matter here.
Datum blank(size_t n) {
  Datum d;
  d.tokens.assign(n, 1);
  d.target_tokens.assign(n, 2);
  return d;
}

LossStats run_datum(LossFn fn, const LossConfig& c, const Datum& d, const std::vector<double>& lp,
                    std::vector<double>& dlogp, double scale = 1.0) {
  LossStats st;
  dlogp.assign(lp.size(), 0.0);
  datum_loss<double>(fn, c, d, lp.data(), lp.data(), scale, dlogp.data(), st);
  return st;
}

}  // namespace

TEST_CASE("grpo/ppo with DAPO's clip-higher: ε_low 0.2, ε_high 0.28") {
  LossConfig c;
  c.clip_low = 0.2f;
  c.clip_high = 0.28f;
  // r = e^0.25 = 1.2840 > 1.28, A = 1: the clipped term 1.28 is the minimum, no gradient.
  auto a = token_loss<double>(LossFn::Grpo, c, 0.0, 1.0, -0.25, 1.0);
  CHECK(a.loss == doctest::Approx(-1.28).epsilon(1e-6));
  CHECK(a.dlogp == 0.0);
  CHECK(a.clipped);
  // r = e^0.2 = 1.2214 inside [0.8, 1.28]: -r·A, gradient -r·A.
  auto b = token_loss<double>(LossFn::DrGrpo, c, 0.0, 1.0, -0.2, 1.0);
  CHECK(b.loss == doctest::Approx(-1.221403).epsilon(1e-6));
  CHECK(b.dlogp == doctest::Approx(-1.221403).epsilon(1e-6));
  CHECK_FALSE(b.clipped);
  // r = e^-0.3 = 0.7408 < 0.8 with A = -1: -min(-0.7408, -0.8) = 0.8, clipped, no gradient.
  auto d = token_loss<double>(LossFn::Ppo, c, 0.0, 1.0, 0.3, -1.0);
  CHECK(d.loss == doctest::Approx(0.8).epsilon(1e-6));
  CHECK(d.dlogp == 0.0);
}

TEST_CASE("cispo: the clipped ratio is a constant weight on A·logp") {
  LossConfig c;  // [0.8, 1.2]
  // r = e^0.5 = 1.6487 -> 1.2; A = 2, logp = -1: loss = -1.2·2·(-1) = 2.4, ∂/∂logp = -2.4.
  auto a = token_loss<double>(LossFn::Cispo, c, -1.0, 1.0, -1.5, 2.0);
  CHECK(a.loss == doctest::Approx(2.4));
  CHECK(a.dlogp == doctest::Approx(-2.4));
  CHECK(a.clipped);
  // Unlike ppo, a clipped token keeps its gradient.
  CHECK(a.dlogp != 0.0);
}

TEST_CASE("reinforce with a baseline: -A·logp") {
  auto a = token_loss<double>(LossFn::Reinforce, LossConfig{}, -2.0, 1.0, 0.0, 0.5);
  CHECK(a.loss == doctest::Approx(1.0));
  CHECK(a.dlogp == doctest::Approx(-0.5));
}

TEST_CASE("Schulman's k1, k2, k3 at δ = 0.5 and their derivatives") {
  auto k1 = kl_term<double>(KlEstimator::K1, 0.5);
  auto k2 = kl_term<double>(KlEstimator::K2, 0.5);
  auto k3 = kl_term<double>(KlEstimator::K3, 0.5);
  CHECK(k1.value == doctest::Approx(0.5));
  CHECK(k1.dlogp == doctest::Approx(1.0));
  CHECK(k2.value == doctest::Approx(0.125));
  CHECK(k2.dlogp == doctest::Approx(0.5));
  CHECK(k3.value == doctest::Approx(0.1065307).epsilon(1e-6));  // e^-0.5 - 1 + 0.5
  CHECK(k3.dlogp == doctest::Approx(0.3934693).epsilon(1e-6));  // 1 - e^-0.5
}

TEST_CASE("gspo: one clipped ratio per sequence") {
  Datum d = blank(3);
  d.weights = {0.0f, 1.0f, 1.0f};  // the first position is prompt
  d.sampler_logprobs = {-9.0f, -1.2f, -2.2f};
  const std::vector<double> lp = {-3.0, -1.0, -2.0};
  std::vector<double> g;
  // s = exp(mean(0.2, 0.2)) = 1.2214 > 1.2; A = 1: clipped term -1.2 is taken, no gradient.
  d.advantages = {0.0f, 1.0f, 1.0f};
  LossStats st = run_datum(LossFn::Gspo, LossConfig{}, d, lp, g);
  CHECK(st.loss == doctest::Approx(-1.2));
  CHECK(g == std::vector<double>{0.0, 0.0, 0.0});
  CHECK(st.clipped == 2);
  // A = -1: -min(-1.2214, -1.2) = 1.2214; each loss token gets -A·s/n = 0.61070.
  d.advantages = {0.0f, -1.0f, -1.0f};
  st = run_datum(LossFn::Gspo, LossConfig{}, d, lp, g);
  CHECK(st.loss == doctest::Approx(1.2214028).epsilon(1e-6));
  CHECK(g[0] == 0.0);
  CHECK(g[1] == doctest::Approx(0.6107014).epsilon(1e-6));
  CHECK(g[2] == doctest::Approx(0.6107014).epsilon(1e-6));
}

TEST_CASE("dpo: -log σ(β·(Δchosen - Δrejected))") {
  Datum chosen = blank(2), rejected = blank(2);
  chosen.ref_logprobs = {-1.5f, -2.0f};    // Δc = 0.5 + 0 = 0.5
  rejected.weights = {0.0f, 1.0f};         // the prompt position is left out
  rejected.ref_logprobs = {-7.0f, -2.0f};  // Δr = -3 + 2 = -1
  const std::vector<double> lc = {-1.0, -2.0}, lr = {-1.0, -3.0};
  LossConfig c;
  c.dpo_beta = 0.1;
  std::vector<double> gc(2), gr(2);
  LossStats st;
  dpo_pair<double>(c, chosen, rejected, lc.data(), lr.data(), 1.0, gc.data(), gr.data(), st);
  // z = 0.1·1.5 = 0.15; loss = log(1 + e^-0.15) = 0.6209571; σ(z) - 1 = -0.4625702.
  CHECK(st.loss == doctest::Approx(0.6209571).epsilon(1e-6));
  CHECK(gc[0] == doctest::Approx(-0.04625702).epsilon(1e-6));
  CHECK(gc[1] == doctest::Approx(-0.04625702).epsilon(1e-6));
  CHECK(gr[0] == 0.0);
  CHECK(gr[1] == doctest::Approx(0.04625702).epsilon(1e-6));
  CHECK(st.pairs_right == 1);
  CHECK(st.margin_sum == doctest::Approx(0.15));
  // Far past either side the loss neither overflows nor loses its value.
  c.dpo_beta = 1000;
  LossStats far;
  dpo_pair<double>(c, rejected, chosen, lr.data(), lc.data(), 1.0, gr.data(), gc.data(), far);
  CHECK(far.loss == doctest::Approx(1500.0));
}

TEST_CASE("normalisation: sum, token, sequence, constant") {
  Datum a = blank(4), b = blank(2);
  a.weights = {0.0f, 1.0f, 1.0f, 1.0f};  // 3 loss tokens
  b.weights = {0.0f, 1.0f};              // 1
  const std::vector<Datum> data = {a, b};
  LossConfig c;
  CHECK(datum_scales(LossFn::Ppo, c, data) == std::vector<double>{1.0, 1.0});
  CHECK(datum_scales(LossFn::Grpo, c, data) == std::vector<double>{1.0 / 6, 1.0 / 2});
  c.normalization = Normalization::Token;
  CHECK(datum_scales(LossFn::Ppo, c, data) == std::vector<double>{0.25, 0.25});
  c.normalization = Normalization::Sequence;
  CHECK(datum_scales(LossFn::Reinforce, c, data) == std::vector<double>{1.0 / 6, 1.0 / 2});
  CHECK(datum_scales(LossFn::Gspo, c, data) == std::vector<double>{0.5, 0.5});
  CHECK(datum_scales(LossFn::Dpo, c, data) == std::vector<double>{1.0, 1.0});
  c.normalization = Normalization::Constant;
  c.normalization_tokens = 8;
  CHECK(datum_scales(LossFn::DrGrpo, c, data) == std::vector<double>{0.125, 0.125});
}

TEST_CASE("truncated importance sampling: the weight min(r, C) on a term taken at r = 1") {
  Datum d = blank(2);
  d.sampler_logprobs = {-1.0f, -0.1f};  // r = e = 2.718 (capped at 2), r = 1.105
  d.advantages = {1.0f, 1.0f};
  LossConfig c;
  c.tis_cap = 2.0;
  std::vector<double> g;
  LossStats st = run_datum(LossFn::ImportanceSampling, c, d, {0.0, 0.0}, g);
  CHECK(st.loss == doctest::Approx(-(2.0 + std::exp(0.1))));
  CHECK(g[0] == doctest::Approx(-2.0));
  CHECK(g[1] == doctest::Approx(-std::exp(0.1)));
  CHECK(st.tis_capped == 1);
  // reinforce: -min(r, C)·A·logp with r = e^0.5 and e^-0.4, both under the cap.
  st = run_datum(LossFn::Reinforce, c, d, {-0.5, -0.5}, g);
  CHECK(st.loss == doctest::Approx(0.5 * (std::exp(0.5) + std::exp(-0.4))));
  CHECK(g[0] == doctest::Approx(-std::exp(0.5)));
}

TEST_CASE("the KL penalty: β·k on loss tokens, kl reported without the penalty too") {
  Datum d = blank(3);
  d.weights = {0.0f, 1.0f, 1.0f};
  d.ref_logprobs = {-5.0f, -1.5f, -1.0f};  // δ = 0.5 and -1 on the loss tokens
  d.sampler_logprobs = {-1.0f, -1.0f, -2.0f};
  d.advantages = {0.0f, 0.0f, 0.0f};
  LossConfig c;
  c.kl_estimator = KlEstimator::K2;
  std::vector<double> g;
  const std::vector<double> lp = {-1.0, -1.0, -2.0};
  LossStats st = run_datum(LossFn::Ppo, c, d, lp, g);
  CHECK(st.kl_tokens == 2);
  CHECK(st.kl_sum == doctest::Approx(0.125 + 0.5));
  CHECK(st.loss == 0.0);
  c.kl_beta = 0.2;
  st = run_datum(LossFn::Ppo, c, d, lp, g, 0.5);
  CHECK(st.loss == doctest::Approx(0.5 * 0.2 * 0.625));
  CHECK(g[0] == 0.0);
  CHECK(g[1] == doctest::Approx(0.5 * 0.2 * 0.5));
  CHECK(g[2] == doctest::Approx(0.5 * 0.2 * -1.0));
}

TEST_CASE("loss config errors name the field") {
  auto expect = [](LossFn fn, LossConfig c, const char* msg) {
    try {
      check_loss_config(fn, c);
      FAIL("accepted: ", msg);
    } catch (const std::invalid_argument& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find(msg) != std::string::npos);
    }
  };
  LossConfig c;
  c.tis_cap = 2;
  expect(LossFn::Gspo, c, "loss_fn_config.tis_cap: does not apply to gspo");
  c = {};
  c.normalization = Normalization::Constant;
  expect(LossFn::DrGrpo, c, "loss_fn_config.normalization_tokens: must be > 0");
  c = {};
  c.kl_beta = -1;
  expect(LossFn::Grpo, c, "loss_fn_config.kl_beta: must be >= 0");
  c = {};
  c.dpo_beta = 0;
  expect(LossFn::Dpo, c, "loss_fn_config.dpo_beta: must be > 0");
  c = {};
  c.clip_low = 1.5f;
  expect(LossFn::Ppo, c, "loss_fn_config.clip_low:");
  LossFn fn;
  CHECK(parse_loss_name("cispo", fn));
  CHECK(fn == LossFn::Cispo);
  CHECK_FALSE(parse_loss_name("grpo2", fn));
  CHECK(std::string(loss_name(LossFn::DrGrpo)) == "dr_grpo");
}
