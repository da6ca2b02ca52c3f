#include <doctest/doctest.h>

#include <cmath>
#include <stdexcept>

#include "emulator/model/model.hpp"
#include "helpers.hpp"

using namespace flare::model;

namespace {

Datum text_datum(std::string_view text) {
  std::vector<int> t = encode_text(text);
  t.insert(t.begin(), kBos);
  t.push_back(kEos);
  Datum d;
  d.tokens.assign(t.begin(), t.end() - 1);
  d.target_tokens.assign(t.begin() + 1, t.end());
  return d;
}

std::vector<float> model_logprobs(const Model& model, const Datum& d) {
  const int V = model.config().vocab;
  auto cache = model.new_cache();
  std::vector<float> logits(d.tokens.size() * V);
  model.prefill(*cache, d.tokens, logits.data(), nullptr);
  std::vector<float> out;
  for (size_t t = 0; t < d.tokens.size(); ++t) {
    const float* row = logits.data() + t * V;
    double mx = row[0], sum = 0;
    for (int v = 0; v < V; ++v) mx = std::max(mx, double(row[v]));
    for (int v = 0; v < V; ++v) sum += std::exp(double(row[v]) - mx);
    out.push_back(float(double(row[d.target_tokens[t]]) - mx - std::log(sum)));
  }
  return out;
}

bool same_weights(const Weights& a, const Weights& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].data != b[i].data) return false;
  return true;
}

}  // namespace

TEST_CASE("trainer logprobs equal the inference model's on the same bf16 weights") {
  const Config c = *builtin("tiny-gpt");
  Weights master = model_test::spread_weights(c, 0.1, 21);
  for (auto& t : master)  // master weights between bf16 values: the trainer must round them
    for (float& x : t.data) x *= 1.001f;
  Trainer trainer(c, master, 2);
  const Model model(c, trainer.sampler_weights());
  const std::vector<Datum> data = {text_datum("The cat sat on the mat."), text_datum("x"),
                                   text_datum("0123456789 abcdefghij")};
  const ForwardBackwardResult r = trainer.forward(data, LossFn::CrossEntropy, {});
  REQUIRE(r.logprobs.size() == data.size());
  double total = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    const std::vector<float> expected = model_logprobs(model, data[i]);
    REQUIRE(r.logprobs[i].size() == expected.size());
    for (size_t t = 0; t < expected.size(); ++t) {
      CHECK(std::fabs(r.logprobs[i][t] - expected[t]) <= 1e-4);
      total -= r.logprobs[i][t];
    }
  }
  CHECK(r.loss == doctest::Approx(total).epsilon(1e-6));
  CHECK(r.tokens == long(data[0].tokens.size() + data[1].tokens.size() + data[2].tokens.size()));
}

TEST_CASE("datum validation names the datum and the field") {
  const Config c = model_test::micro_config();
  Trainer trainer(c, init_weights(c), 1);
  Datum ok = text_datum("abc");
  ok.sampler_logprobs.assign(ok.tokens.size(), -1.0f);
  ok.advantages.assign(ok.tokens.size(), 1.0f);
  auto expect = [&](Datum bad, LossFn fn, const char* msg) {
    std::vector<Datum> data{ok, bad};
    CHECK_THROWS_WITH_AS(trainer.forward_backward(data, fn, {}), doctest::Contains(msg),
                         std::invalid_argument);
  };
  Datum d = ok;
  d.target_tokens.pop_back();
  expect(d, LossFn::CrossEntropy, "data[1].target_tokens: length 3 does not match tokens length 4");
  d = ok;
  d.tokens[2] = 300;
  expect(d, LossFn::CrossEntropy, "data[1].tokens: token 300 at position 2");
  d = ok;
  d.target_tokens[0] = -1;
  expect(d, LossFn::CrossEntropy, "data[1].target_tokens: token -1 at position 0");
  d = ok;
  d.weights = {1, 1};
  expect(d, LossFn::CrossEntropy, "data[1].weights: length 2");
  d = text_datum(std::string(c.max_seq + 1, 'a'));
  expect(d, LossFn::CrossEntropy, "data[1].tokens: length 34 exceeds max_seq 32");
  d = ok;
  d.advantages.clear();
  expect(d, LossFn::ImportanceSampling, "data[1].advantages: required by importance_sampling");
  d = ok;
  d.sampler_logprobs.clear();
  expect(d, LossFn::Ppo, "data[1].sampler_logprobs: required by ppo");
  d = Datum{};
  expect(d, LossFn::CrossEntropy, "data[1].tokens: is empty");
  // A refused batch leaves no gradient behind.
  CHECK(trainer.optim_step({}).grad_norm == 0.0);
}

TEST_CASE("cross-entropy training on a fixed string drives its loss down") {
  const Config c = *builtin("tiny-gpt");
  Trainer trainer(c, init_weights(c), 2);
  const std::vector<Datum> data = {text_datum("the quick brown fox jumps over the lazy dog")};
  AdamParams adam;
  adam.learning_rate = 3e-3;
  const double first = trainer.forward(data, LossFn::CrossEntropy, {}).loss;
  double last = first;
  for (int step = 0; step < 50; ++step) {
    last = trainer.forward_backward(data, LossFn::CrossEntropy, {}).loss;
    trainer.optim_step(adam);
  }
  last = trainer.forward(data, LossFn::CrossEntropy, {}).loss;
  CHECK(trainer.step() == 50);
  CHECK(first / data[0].tokens.size() == doctest::Approx(std::log(258.0)).epsilon(0.02));
  CHECK(last < 0.3 * first);
}

TEST_CASE("importance sampling with a positive advantage raises that token's probability") {
  const Config c = *builtin("tiny-gpt");
  Trainer trainer(c, init_weights(c), 2);
  Datum d = text_datum("2+3=5");
  const auto before = trainer.forward({d}, LossFn::CrossEntropy, {}).logprobs[0];
  const size_t answer = d.tokens.size() - 2;  // position whose target is '5'
  REQUIRE(d.target_tokens[answer] == '5');
  d.sampler_logprobs = before;
  d.advantages.assign(d.tokens.size(), 0.0f);
  d.advantages[answer] = 1.0f;
  const ForwardBackwardResult r = trainer.forward_backward({d}, LossFn::ImportanceSampling, {});
  CHECK(r.mean_ratio == doctest::Approx(1.0));
  CHECK(r.logprob_mismatch == doctest::Approx(0.0).epsilon(1e-9));
  CHECK(r.loss == doctest::Approx(-1.0).epsilon(1e-5));
  AdamParams adam;
  adam.learning_rate = 1e-3;
  trainer.optim_step(adam);
  const auto after = trainer.forward({d}, LossFn::CrossEntropy, {}).logprobs[0];
  CHECK(after[answer] > before[answer] + 0.05f);
}

TEST_CASE("ppo metrics: ratio, clip fraction and logprob mismatch over advantage-bearing tokens") {
  const Config c = model_test::micro_config();
  Trainer trainer(c, model_test::spread_weights(c, 0.2, 3), 1);
  Datum d = text_datum("abcd");
  const auto lp = trainer.forward({d}, LossFn::CrossEntropy, {}).logprobs[0];
  d.advantages = {0.0f, 1.0f, 1.0f, -1.0f, 1.0f};
  const float deltas[] = {5.0f, 0.5f, 0.0f, -0.5f, 0.1f};  // ratio = exp(delta)
  double ratio_sum = 0, kl = 0;
  for (size_t t = 0; t < lp.size(); ++t) {
    d.sampler_logprobs.push_back(lp[t] - deltas[t]);
    if (t > 0) {
      ratio_sum += std::exp(double(deltas[t]));
      kl += std::exp(double(deltas[t])) - 1 - deltas[t];
    }
  }
  const ForwardBackwardResult r = trainer.forward({d}, LossFn::Ppo, LossConfig{});
  CHECK(r.mean_ratio == doctest::Approx(ratio_sum / 4).epsilon(1e-4));
  CHECK(r.logprob_mismatch == doctest::Approx(kl / 4).epsilon(1e-3));
  CHECK(r.clip_fraction == doctest::Approx(0.5));  // exp(0.5) and exp(-0.5) leave [0.8, 1.2]
  // loss = -Σ min(r·A, clip(r)·A): 1.2 (clipped), 1, max(-0.61, -0.8)→-0.8·… computed below.
  const double expected = -(1.2 * 1 + 1.0 * 1 + std::min(-std::exp(-0.5), -0.8) + std::exp(0.1));
  CHECK(r.loss == doctest::Approx(expected).epsilon(1e-4));
}

TEST_CASE("gradients accumulate across forward_backward calls until optim_step") {
  const Config c = model_test::micro_config();
  const Weights w = model_test::spread_weights(c, 0.2, 5);
  const std::vector<Datum> a = {text_datum("hello")}, b = {text_datum("world!")};
  std::vector<Datum> both = a;
  both.push_back(b[0]);

  Trainer once(c, w, 1), twice(c, w, 1), split(c, w, 1), joined(c, w, 2);
  once.forward_backward(a, LossFn::CrossEntropy, {});
  twice.forward_backward(a, LossFn::CrossEntropy, {});
  twice.forward_backward(a, LossFn::CrossEntropy, {});
  CHECK(twice.optim_step({}).grad_norm ==
        doctest::Approx(2 * once.optim_step({}).grad_norm).epsilon(1e-6));

  split.forward_backward(a, LossFn::CrossEntropy, {});
  split.forward_backward(b, LossFn::CrossEntropy, {});
  joined.forward_backward(both, LossFn::CrossEntropy, {});
  const OptimResult rs = split.optim_step({}), rj = joined.optim_step({});
  CHECK(rs.grad_norm == doctest::Approx(rj.grad_norm).epsilon(1e-6));
  CHECK(rs.grad_norm > 0);
  CHECK(rs.step == 1);
  // The accumulator was cleared by the step.
  CHECK(split.optim_step({}).grad_norm == 0.0);
}

TEST_CASE("two-thread training is deterministic") {
  const Config c = *builtin("tiny-gpt");
  std::vector<Datum> data;
  for (int i = 0; i < 9; ++i)
    data.push_back(text_datum(std::string(size_t(5 + 7 * i), char('a' + i))));
  Trainer x(c, init_weights(c), 2), y(c, init_weights(c), 2);
  for (int step = 0; step < 2; ++step) {
    const auto rx = x.forward_backward(data, LossFn::CrossEntropy, {});
    const auto ry = y.forward_backward(data, LossFn::CrossEntropy, {});
    CHECK(rx.loss == ry.loss);
    CHECK(x.optim_step({}).grad_norm == y.optim_step({}).grad_norm);
  }
  CHECK(same_weights(x.master(), y.master()));
}

TEST_CASE("AdamW: decoupled weight decay, and a zero gradient moves nothing else") {
  const Config c = model_test::micro_config();
  const Weights w = model_test::spread_weights(c, 0.2, 6);
  Trainer t(c, w, 1);
  AdamParams p;
  p.learning_rate = 0.1;
  p.weight_decay = 0.5;
  const OptimResult r = t.optim_step(p);
  CHECK(r.grad_norm == 0.0);
  CHECK(r.step == 1);
  for (size_t i = 0; i < w.size(); ++i)
    for (size_t j = 0; j < w[i].data.size(); ++j)
      CHECK(t.master()[i].data[j] == float(double(w[i].data[j]) * (1 - 0.05)));
  const Weights s = t.sampler_weights();
  CHECK(s[0].data[0] == round_to_bf16(t.master()[0].data[0]));
}

TEST_CASE("gradient clipping bounds the first update of a huge gradient") {
  const Config c = model_test::micro_config();
  const Weights w = model_test::spread_weights(c, 0.2, 8);
  Datum d = text_datum("abc");
  d.weights.assign(d.tokens.size(), 1000.0f);
  AdamParams clipped, plain;
  clipped.grad_clip_norm = 1.0;
  clipped.eps = plain.eps = 1.0;  // large eps: the update then scales with the gradient
  Trainer a(c, w, 1), b(c, w, 1);
  a.forward_backward({d}, LossFn::CrossEntropy, {});
  b.forward_backward({d}, LossFn::CrossEntropy, {});
  const OptimResult ra = a.optim_step(clipped), rb = b.optim_step(plain);
  CHECK(ra.grad_norm == doctest::Approx(rb.grad_norm));
  CHECK(ra.grad_norm > 10.0);
  double moved_a = 0, moved_b = 0;
  for (size_t i = 0; i < w.size(); ++i)
    for (size_t j = 0; j < w[i].data.size(); ++j) {
      moved_a += std::fabs(a.master()[i].data[j] - w[i].data[j]);
      moved_b += std::fabs(b.master()[i].data[j] - w[i].data[j]);
    }
  CHECK(moved_a < 0.5 * moved_b);
}

TEST_CASE("forward computes no gradient") {
  const Config c = model_test::micro_config();
  Trainer t(c, model_test::spread_weights(c, 0.2, 9), 2);
  const std::vector<Datum> data = {text_datum("abc"), text_datum("defgh")};
  const ForwardBackwardResult f = t.forward(data, LossFn::CrossEntropy, {});
  CHECK(f.loss > 0);
  CHECK(t.optim_step({}).grad_norm == 0.0);
  const ForwardBackwardResult fb = t.forward_backward(data, LossFn::CrossEntropy, {});
  CHECK(fb.loss == doctest::Approx(f.loss).epsilon(1e-3));  // one step of lr 1e-4 later
  CHECK(t.optim_step({}).grad_norm > 0.0);
}

TEST_CASE("the larger built-in model trains and serves") {
  const Config c = *builtin("tiny-gpt-m");
  Trainer trainer(c, init_weights(c), 2);
  const Datum d = text_datum("larger model");
  const ForwardBackwardResult r = trainer.forward_backward({d}, LossFn::CrossEntropy, {});
  CHECK(r.loss / double(d.tokens.size()) == doctest::Approx(std::log(258.0)).epsilon(0.02));
  CHECK(trainer.optim_step({}).grad_norm > 0);
  const Model model(c, trainer.sampler_weights());
  const std::vector<float> expected = model_logprobs(model, d);
  const auto got = trainer.forward({d}, LossFn::CrossEntropy, {}).logprobs[0];
  for (size_t t = 0; t < expected.size(); ++t) CHECK(std::fabs(got[t] - expected[t]) <= 1e-4);
}

TEST_CASE("dpo through the trainer: pairs split across threads, the pair loss from the logprobs") {
  const Config c = model_test::micro_config();
  const Weights w = model_test::spread_weights(c, 0.2, 8);
  std::vector<Datum> data = {text_datum("aei"), text_datum("xyz!"), text_datum("ou"),
                             text_datum("qq")};
  Trainer one(c, w, 1), three(c, w, 3);
  const auto base = one.forward(data, LossFn::CrossEntropy, {}).logprobs;
  for (size_t i = 0; i < data.size(); ++i) {
    data[i].ref_logprobs = base[i];
    for (float& x : data[i].ref_logprobs) x -= 0.1f * float(i);  // Δ_i = 0.1·i per token
  }
  LossConfig lc;
  lc.dpo_beta = 0.5;
  const ForwardBackwardResult a = one.forward_backward(data, LossFn::Dpo, lc);
  const ForwardBackwardResult b = three.forward_backward(data, LossFn::Dpo, lc);
  // z = β·(Δ_chosen − Δ_rejected): pair 1 0.5·(0 − 0.1·5) < 0, pair 2 0.5·(0.2·3 − 0.3·3) < 0.
  auto softplus = [](double x) { return std::log1p(std::exp(x)); };
  const double z1 = 0.5 * (0.0 - 0.1 * 5), z2 = 0.5 * (0.2 * 3 - 0.3 * 3);
  CHECK(a.loss == doctest::Approx(softplus(-z1) + softplus(-z2)).epsilon(1e-4));
  CHECK(a.preference_accuracy == 0.0);
  CHECK(a.reward_margin == doctest::Approx((z1 + z2) / 2).epsilon(1e-4));
  CHECK(a.loss == b.loss);
  AdamParams adam;
  adam.learning_rate = 1e-2;
  CHECK(one.optim_step(adam).grad_norm == doctest::Approx(three.optim_step(adam).grad_norm));
  // The step raises the chosen sequences against the rejected ones.
  const ForwardBackwardResult after = one.forward(data, LossFn::Dpo, lc);
  CHECK(after.loss < a.loss);
  CHECK(after.reward_margin > a.reward_margin);
}

TEST_CASE("the KL penalty pulls the policy back towards the reference") {
  const Config c = model_test::micro_config();
  const Weights w = model_test::spread_weights(c, 0.2, 9);
  Datum d = text_datum("abc");
  Trainer moved(c, w, 1);
  d.ref_logprobs = moved.forward({d}, LossFn::CrossEntropy, {}).logprobs[0];
  // Move the policy away from the reference by training on the text; then a fresh
  // optimiser (no momentum left from that) on the moved weights.
  AdamParams adam;
  adam.learning_rate = 3e-2;
  for (int i = 0; i < 5; ++i) {
    moved.forward_backward({d}, LossFn::CrossEntropy, {});
    moved.optim_step(adam);
  }
  Trainer policy(c, moved.master(), 1);
  d.sampler_logprobs = policy.forward({d}, LossFn::CrossEntropy, {}).logprobs[0];
  d.advantages.assign(d.tokens.size(), 0.0f);  // no reward signal: only the penalty acts
  LossConfig lc;
  lc.kl_beta = 1.0;
  const double before = policy.forward({d}, LossFn::Grpo, lc).kl;
  CHECK(before > 0.01);
  for (int i = 0; i < 5; ++i) {
    policy.forward_backward({d}, LossFn::Grpo, lc);
    policy.optim_step(adam);
  }
  CHECK(policy.forward({d}, LossFn::Grpo, lc).kl < 0.5 * before);
}
