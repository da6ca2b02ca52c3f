// LoRA: adapters on every projection, trained with the base frozen, served per
// sequence by the inference model.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
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

std::vector<float> model_logprobs(const Model& model, const Datum& d,
                                  std::shared_ptr<const Adapter> adapter) {
  const int V = model.config().vocab;
  auto cache = model.new_cache(std::move(adapter));
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

bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

const std::vector<Datum>& sample_data() {
  static const std::vector<Datum> data = {text_datum("The cat sat on the mat."),
                                          text_datum("aeiou aeiou"), text_datum("0123456789")};
  return data;
}

// A LoRA trainer after a few cross-entropy steps on the sample data.
std::unique_ptr<Trainer> trained_lora(const Config& c, const Weights& base, int rank, double alpha,
                                      uint64_t seed, int steps) {
  auto t = std::make_unique<Trainer>(c, base, 2, LoraConfig{rank, alpha, seed});
  AdamParams p;
  p.learning_rate = 1e-2;
  for (int s = 0; s < steps; ++s) {
    t->forward_backward(sample_data(), LossFn::CrossEntropy, {});
    t->optim_step(p);
  }
  return t;
}

}  // namespace

TEST_CASE("lora specs use PEFT's target names and shapes on every projection and lm_head") {
  const Config c = *builtin("tiny-gpt");
  const std::vector<TensorSpec> specs = lora_specs(c, 8, false);
  REQUIRE(specs.size() == size_t(c.n_layers) * kLoraTargets * 2);
  CHECK(specs[0].name == "model.layers.0.self_attn.q_proj.lora_A.weight");
  CHECK(specs[0].shape == std::vector<int64_t>{8, c.d_model});
  CHECK(specs[1].name == "model.layers.0.self_attn.q_proj.lora_B.weight");
  CHECK(specs[1].shape == std::vector<int64_t>{c.d_model, 8});
  CHECK(specs[8].name == "model.layers.0.mlp.gate_proj.lora_A.weight");
  CHECK(specs[9].shape == std::vector<int64_t>{c.d_ff, 8});
  CHECK(specs[12].name == "model.layers.0.mlp.down_proj.lora_A.weight");
  CHECK(specs[12].shape == std::vector<int64_t>{8, c.d_ff});
  CHECK(specs.back().name == "model.layers.1.mlp.down_proj.lora_B.weight");
  // train_unembed: lm_head's pair at the end, the output head's [vocab, d_model] factored.
  const std::vector<TensorSpec> head = lora_specs(c, 8, true);
  REQUIRE(head.size() == specs.size() + 2);
  CHECK(head[specs.size()].name == "lm_head.lora_A.weight");
  CHECK(head[specs.size()].shape == std::vector<int64_t>{8, c.d_model});
  CHECK(head.back().name == "lm_head.lora_B.weight");
  CHECK(head.back().shape == std::vector<int64_t>{c.vocab, 8});
  CHECK(LoraConfig{}.train_unembed);  // the SDK's default
  CHECK(init_lora(c, {8, 16, 1}).size() == head.size());
  CHECK(init_lora(c, {8, 16, 1, false}).size() == specs.size());
  CHECK_THROWS_WITH_AS(lora_specs(c, 0, true), "lora rank 0 is outside [1, 64]",
                       std::invalid_argument);
  CHECK_THROWS_AS(lora_specs(c, 65, false), std::invalid_argument);
}

TEST_CASE("lora init: A kaiming-uniform in +-1/sqrt(in) from the seed, B zero") {
  const Config c = *builtin("tiny-gpt");
  const Weights a = init_lora(c, {4, 8, 5});
  const Weights b = init_lora(c, {4, 8, 5});
  const Weights other = init_lora(c, {4, 8, 6});
  CHECK(a[0].data == b[0].data);
  CHECK(a[0].data != other[0].data);
  for (size_t i = 0; i < a.size(); ++i) {
    const bool is_a = i % 2 == 0;
    const double bound = 1.0 / std::sqrt(double(a[i].shape[1]));
    double sq = 0;
    for (float x : a[i].data) {
      if (!is_a) REQUIRE(x == 0.0f);
      REQUIRE(std::fabs(x) <= bound * 1.01);
      REQUIRE(x == round_to_bf16(x));
      sq += double(x) * x;
    }
    if (is_a)  // uniform in +-bound has variance bound^2 / 3
      CHECK(sq / double(a[i].data.size()) == doctest::Approx(bound * bound / 3).epsilon(0.25));
  }
}

TEST_CASE("at step 0 a LoRA trainer computes exactly the base, bit for bit") {
  const Config c = *builtin("tiny-gpt");
  const Weights base = model_test::spread_weights(c, 0.1, 3);
  Trainer full(c, base, 2);
  Trainer lora(c, base, 2, {8, 16, 1});
  const auto rf = full.forward(sample_data(), LossFn::CrossEntropy, {});
  const auto rl = lora.forward_backward(sample_data(), LossFn::CrossEntropy, {});
  for (size_t i = 0; i < rf.logprobs.size(); ++i) CHECK(bit_equal(rf.logprobs[i], rl.logprobs[i]));
  CHECK(rf.loss == rl.loss);
  // And the sampler with the untrained adapter loaded, too.
  const Model model(c, lora.sampler_weights());
  auto adapter = std::make_shared<const Adapter>(c, lora.adapter_weights(), 8.0f / 8.0f);
  CHECK(bit_equal(model_logprobs(model, sample_data()[0], nullptr),
                  model_logprobs(model, sample_data()[0], adapter)));
}

TEST_CASE("LoRA trains only A and B; the loss falls and the base stays frozen") {
  const Config c = *builtin("tiny-gpt");
  const Weights base = init_weights(c);
  auto t = trained_lora(c, base, 4, 8, 1, 0);
  const double before = t->forward(sample_data(), LossFn::CrossEntropy, {}).loss;
  const Weights a0 = t->adapter_weights();
  AdamParams p;
  p.learning_rate = 1e-2;
  for (int s = 0; s < 10; ++s) {
    t->forward_backward(sample_data(), LossFn::CrossEntropy, {});
    t->optim_step(p);
  }
  const double after = t->forward(sample_data(), LossFn::CrossEntropy, {}).loss;
  CHECK(after < before * 0.95);
  for (size_t i = 0; i < base.size(); ++i) CHECK(t->master()[i].data == base[i].data);
  const Weights a1 = t->adapter_weights();
  for (size_t i = 0; i < a1.size(); ++i) CHECK(a1[i].data != a0[i].data);  // every A and B moved
}

TEST_CASE("the sampler with the adapter loaded matches the LoRA trainer's logprobs") {
  const Config c = *builtin("tiny-gpt");
  const Weights base = init_weights(c);
  auto t = trained_lora(c, base, 8, 16, 2, 5);
  const auto r = t->forward(sample_data(), LossFn::CrossEntropy, {});
  const Model model(c, t->sampler_weights());
  auto adapter = std::make_shared<const Adapter>(c, t->adapter_weights(), lora_scale(16, 8));
  double worst = 0;
  bool differs_from_base = false;
  for (size_t i = 0; i < sample_data().size(); ++i) {
    const auto lp = model_logprobs(model, sample_data()[i], adapter);
    const auto lb = model_logprobs(model, sample_data()[i], nullptr);
    for (size_t k = 0; k < lp.size(); ++k) {
      worst = std::max(worst, double(std::fabs(lp[k] - r.logprobs[i][k])));
      differs_from_base |= std::fabs(lb[k] - lp[k]) > 1e-3;
    }
  }
  INFO("worst |sampler - trainer| = ", worst);
  CHECK(worst <= 1e-4);
  CHECK(differs_from_base);

  // The merged checkpoint (adapter folded into bf16 weights) serves nearly the same.
  const Model merged(c, t->merged_weights());
  double merged_worst = 0;
  for (size_t i = 0; i < sample_data().size(); ++i) {
    const auto lm = model_logprobs(merged, sample_data()[i], nullptr);
    for (size_t k = 0; k < lm.size(); ++k)
      merged_worst = std::max(merged_worst, double(std::fabs(lm[k] - r.logprobs[i][k])));
  }
  INFO("worst |merged - trainer| = ", merged_worst);
  CHECK(merged_worst < 5e-3);  // bf16 rounding of the merged weights only
}

TEST_CASE("an lm_head adapter moves the logits; merging it unties the head, the embedding kept") {
  const Config c = *builtin("tiny-gpt");
  const Weights base = init_weights(c);
  auto t = std::make_unique<Trainer>(c, base, 2, LoraConfig{4, 8, 3});
  const double before = t->forward(sample_data(), LossFn::CrossEntropy, {}).loss;
  AdamParams p;
  p.learning_rate = 1e-2;
  for (int s = 0; s < 8; ++s) {
    t->forward_backward(sample_data(), LossFn::CrossEntropy, {});
    t->optim_step(p);
  }
  const double after = t->forward(sample_data(), LossFn::CrossEntropy, {}).loss;
  CHECK(after < before * 0.9);
  const Weights adapter = t->adapter_weights();
  REQUIRE(lora_has_head(adapter));
  CHECK(adapter.back().name == "lm_head.lora_B.weight");
  bool head_moved = false;
  for (float x : adapter.back().data) head_moved |= x != 0.0f;
  CHECK(head_moved);

  const Weights merged = t->merged_weights();
  const size_t n_base = parameter_specs(c).size();
  REQUIRE(merged.size() == n_base + 1);
  CHECK(merged.back().name == "lm_head.weight");
  CHECK(merged.back().shape == std::vector<int64_t>{c.vocab, c.d_model});
  CHECK(merged[0].data == t->sampler_weights()[0].data);  // the input embedding is unchanged
  CHECK(merged.back().data != merged[0].data);
  // Without train_unembed the merged weights keep the tied head.
  auto plain = std::make_unique<Trainer>(c, base, 2, LoraConfig{4, 8, 3, false});
  CHECK(!lora_has_head(plain->adapter_weights()));
  CHECK(plain->merged_weights().size() == n_base);

  // An untied head equal to the embedding computes exactly the tied model.
  Weights untied = base;
  untied.push_back({"lm_head.weight", untied_head_spec(c).shape, base[0].data});
  const Model tied_model(c, base), untied_model(c, untied);
  CHECK(bit_equal(model_logprobs(tied_model, sample_data()[0], nullptr),
                  model_logprobs(untied_model, sample_data()[0], nullptr)));
  // A trainer on untied weights trains the head and the embedding apart.
  Trainer full(c, untied, 2);
  full.forward_backward(sample_data(), LossFn::CrossEntropy, {});
  full.optim_step(p);
  CHECK(full.master().back().data != full.master()[0].data);
  Weights misnamed = untied;
  misnamed.back().name = "lm_head.bias";
  CHECK_THROWS_WITH_AS(Model(c, misnamed), "weights: unexpected tensor lm_head.bias",
                       std::invalid_argument);
}

TEST_CASE("one decode batch serves sequences with different adapters and none, per row") {
  const Config c = *builtin("tiny-gpt");
  const Weights base = init_weights(c);
  auto t1 = trained_lora(c, base, 4, 8, 1, 3);
  auto t2 = trained_lora(c, base, 16, 32, 2, 3);
  const Model model(c, base);
  auto a1 = std::make_shared<const Adapter>(c, t1->adapter_weights(), lora_scale(8, 4));
  auto a2 = std::make_shared<const Adapter>(c, t2->adapter_weights(), lora_scale(32, 16));
  const std::vector<std::shared_ptr<const Adapter>> per_row = {a1, nullptr, a2, a2, a1, nullptr};
  const std::vector<int> prompt = encode_text("Hello");
  const int V = c.vocab, steps = 6;
  // Alone: each sequence prefilled and decoded by itself.
  std::vector<std::vector<float>> alone(per_row.size());
  for (size_t b = 0; b < per_row.size(); ++b) {
    auto cache = model.new_cache(per_row[b]);
    std::vector<float> logits(V);
    model.prefill(*cache, prompt, nullptr, logits.data());
    for (int s = 0; s < steps; ++s) {
      Model::Cache* one[] = {cache.get()};
      const int tok[] = {int(b * 7 + s) % 256};
      model.decode(one, tok, logits.data());
      alone[b].insert(alone[b].end(), logits.begin(), logits.end());
    }
  }
  // Together: one decode call per step over all of them.
  std::vector<std::unique_ptr<Model::Cache, void (*)(Model::Cache*)>> caches;
  std::vector<Model::Cache*> ptrs;
  for (const auto& a : per_row) {
    caches.push_back(model.new_cache(a));
    model.prefill(*caches.back(), prompt, nullptr, nullptr);
    ptrs.push_back(caches.back().get());
  }
  std::vector<std::vector<float>> together(per_row.size());
  std::vector<float> logits(per_row.size() * V);
  for (int s = 0; s < steps; ++s) {
    std::vector<int> toks;
    for (size_t b = 0; b < per_row.size(); ++b) toks.push_back(int(b * 7 + s) % 256);
    model.decode(ptrs, toks, logits.data());
    for (size_t b = 0; b < per_row.size(); ++b)
      together[b].insert(together[b].end(), logits.begin() + b * V, logits.begin() + (b + 1) * V);
  }
  for (size_t b = 0; b < per_row.size(); ++b) CHECK(bit_equal(alone[b], together[b]));
  CHECK(!bit_equal(alone[0], alone[1]));
  CHECK(!bit_equal(alone[0], alone[2]));
  // A copied cache keeps its adapter.
  auto copy = model.copy_cache(*caches[0]);
  std::vector<float> x(V), y(V);
  Model::Cache* c0[] = {caches[0].get()};
  Model::Cache* c1[] = {copy.get()};
  const int tok[] = {65};
  model.decode(c0, tok, x.data());
  model.decode(c1, tok, y.data());
  CHECK(bit_equal(x, y));
}

TEST_CASE("LoRA state save/load continues bit-identically; mismatches are refused") {
  const Config c = *builtin("tiny-gpt");
  const Weights base = init_weights(c);
  auto a = trained_lora(c, base, 4, 8, 1, 2);
  a->forward_backward(sample_data(), LossFn::CrossEntropy, {});  // a pending gradient too
  const std::string state = a->save_state();
  Trainer b(c, base, 2, {4, 8, 99});  // another seed: load_state replaces A
  b.load_state(state);
  CHECK(b.step() == a->step());
  for (Trainer* t : {a.get(), &b}) t->optim_step({});
  const Weights wa = a->adapter_weights(), wb = b.adapter_weights();
  for (size_t i = 0; i < wa.size(); ++i) CHECK(wa[i].data == wb[i].data);
  // The state holds the adapter, not the base: much smaller than a full state.
  CHECK(state.size() * 4 < Trainer(c, base, 1).save_state().size());

  Trainer other_rank(c, base, 1, {8, 8, 1});
  CHECK_THROWS_WITH_AS(other_rank.load_state(state),
                       "trainer state: lora rank is 4, this trainer's is 8", std::invalid_argument);
  Trainer other_alpha(c, base, 1, {4, 16, 1});
  CHECK_THROWS_AS(other_alpha.load_state(state), std::invalid_argument);
  Trainer full(c, base, 1);
  CHECK_THROWS_WITH_AS(full.load_state(state), "trainer state: lora rank is 4, this trainer's is 0",
                       std::invalid_argument);
  CHECK_THROWS_AS(b.load_state(full.save_state()), std::invalid_argument);
  Trainer no_head(c, base, 1, {4, 8, 1, false});
  CHECK_THROWS_WITH_AS(no_head.load_state(state), doctest::Contains("train_unembed differs"),
                       std::invalid_argument);
}

TEST_CASE("bad LoRA settings and adapters are refused with clear messages") {
  const Config c = *builtin("tiny-gpt");
  const Weights base = init_weights(c);
  CHECK_THROWS_WITH_AS(Trainer(c, base, 1, {65, 8, 1}), "lora rank 65 is outside [1, 64]",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(Trainer(c, base, 1, {-1, 8, 1}), "lora rank -1 is outside [1, 64]",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(Trainer(c, base, 1, {8, 0, 1}), "lora alpha must be a finite number > 0",
                       std::invalid_argument);
  Weights lora = init_lora(c, {4, 8, 1});
  lora[3].shape = {7, 4};
  CHECK_THROWS_WITH_AS(Adapter(c, lora, 1.0f),
                       "weights: tensor model.layers.0.self_attn.k_proj.lora_B.weight has shape "
                       "[7, 4], expected [64, 4]",
                       std::invalid_argument);
  lora = init_lora(c, {4, 8, 1});
  lora.pop_back();
  CHECK_THROWS_WITH_AS(Adapter(c, lora, 1.0f), "weights: missing tensor lm_head.lora_B.weight",
                       std::invalid_argument);
  lora = init_lora(c, {4, 8, 1, false});
  lora.pop_back();
  CHECK_THROWS_WITH_AS(Adapter(c, lora, 1.0f),
                       "weights: missing tensor model.layers.1.mlp.down_proj.lora_B.weight",
                       std::invalid_argument);
  const Config m = *builtin("tiny-gpt-m");
  auto other = std::make_shared<const Adapter>(m, init_lora(m, {4, 8, 1}), 1.0f);
  const Model model(c, base);
  CHECK_THROWS_WITH_AS(model.new_cache(other),
                       "new_cache: the adapter was made for model 'tiny-gpt-m', this model is "
                       "'tiny-gpt'",
                       std::invalid_argument);
}
