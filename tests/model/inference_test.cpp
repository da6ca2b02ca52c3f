#include <doctest/doctest.h>

#include <cmath>
#include <stdexcept>
#include <thread>

#include "emulator/model/model.hpp"
#include "helpers.hpp"

using namespace flare::model;

namespace {

std::vector<int> sample_tokens(size_t n, int salt) {
  std::vector<int> t{kBos};
  for (size_t i = 1; i < n; ++i) t.push_back(int((i * 37 + salt * 11) % 256));
  return t;
}

double max_abs_diff(const float* a, const float* b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(double(a[i]) - double(b[i])));
  return m;
}

}  // namespace

TEST_CASE("logits do not depend on prefill, token-by-token or batched decode") {
  const Config c = *builtin("tiny-gpt");
  const Model model(c, model_test::spread_weights(c, 0.1, 3));
  const int V = c.vocab;
  const std::vector<std::vector<int>> seqs = {sample_tokens(9, 1), sample_tokens(7, 2),
                                              sample_tokens(12, 3)};

  for (size_t s = 0; s < seqs.size(); ++s) {
    const auto& toks = seqs[s];
    const size_t n = toks.size();
    // All at once.
    auto whole = model.new_cache();
    std::vector<float> all(n * V), last(V);
    model.prefill(*whole, toks, all.data(), last.data());
    CHECK(Model::cache_length(*whole) == int(n));
    CHECK(max_abs_diff(last.data(), all.data() + (n - 1) * V, V) == 0.0);
    // One token per prefill call.
    auto single = model.new_cache();
    std::vector<float> one(V);
    for (size_t t = 0; t < n; ++t) {
      model.prefill(*single, std::span<const int>(&toks[t], 1), nullptr, one.data());
      CHECK(max_abs_diff(one.data(), all.data() + t * V, V) <= 1e-5);
    }
    // Prefill a prompt, then single-sequence decode.
    auto mixed = model.new_cache();
    model.prefill(*mixed, std::span<const int>(toks.data(), 2), nullptr, nullptr);
    for (size_t t = 2; t < n; ++t) {
      Model::Cache* cp = mixed.get();
      model.decode(std::span<Model::Cache* const>(&cp, 1), std::span<const int>(&toks[t], 1),
                   one.data());
      CHECK(max_abs_diff(one.data(), all.data() + t * V, V) <= 1e-5);
    }
  }

  // Batched decode of sequences at different positions.
  std::vector<std::vector<float>> reference;
  for (const auto& toks : seqs) {
    auto cache = model.new_cache();
    std::vector<float> all(toks.size() * V);
    model.prefill(*cache, toks, all.data(), nullptr);
    reference.push_back(all);
  }
  std::vector<std::unique_ptr<Model::Cache, void (*)(Model::Cache*)>> caches;
  for (size_t s = 0; s < seqs.size(); ++s) {
    caches.push_back(model.new_cache());
    model.prefill(*caches.back(), std::span<const int>(seqs[s].data(), s + 1), nullptr, nullptr);
  }
  std::vector<float> batch_logits(seqs.size() * V);
  for (int step = 0; step < 4; ++step) {
    std::vector<Model::Cache*> ptrs;
    std::vector<int> toks;
    std::vector<size_t> pos;
    for (size_t s = 0; s < seqs.size(); ++s) {
      ptrs.push_back(caches[s].get());
      pos.push_back(size_t(Model::cache_length(*caches[s])));
      toks.push_back(seqs[s][pos.back()]);
    }
    model.decode(ptrs, toks, batch_logits.data());
    for (size_t s = 0; s < seqs.size(); ++s)
      CHECK(max_abs_diff(batch_logits.data() + s * V, reference[s].data() + pos[s] * V, V) <= 1e-5);
  }
}

TEST_CASE("a copied cache continues like the original, independently") {
  const Config c = *builtin("tiny-gpt");
  const Model model(c, model_test::spread_weights(c, 0.1, 6));
  const auto toks = sample_tokens(10, 4);
  auto original = model.new_cache();
  model.prefill(*original, std::span<const int>(toks.data(), 6), nullptr, nullptr);
  auto copy = model.copy_cache(*original);
  CHECK(Model::cache_length(*copy) == 6);
  std::vector<float> a(c.vocab), b(c.vocab), other(c.vocab);
  model.prefill(*original, std::span<const int>(toks.data() + 6, 4), nullptr, a.data());
  CHECK(Model::cache_length(*copy) == 6);
  model.prefill(*copy, std::span<const int>(toks.data() + 6, 4), nullptr, b.data());
  CHECK(a == b);
  const int different = 'z';
  auto third = model.copy_cache(*original);
  model.prefill(*third, std::span<const int>(&different, 1), nullptr, other.data());
  CHECK(max_abs_diff(a.data(), other.data(), c.vocab) > 0);
  const Model another(c, model_test::spread_weights(c, 0.1, 6));
  CHECK_THROWS_WITH_AS(another.copy_cache(*original), doctest::Contains("another model"),
                       std::invalid_argument);
}

TEST_CASE("concurrent callers with their own caches get the same logits") {
  const Config c = *builtin("tiny-gpt");
  const Model model(c, model_test::spread_weights(c, 0.1, 4));
  const auto toks = sample_tokens(20, 5);
  std::vector<float> expected(c.vocab);
  {
    auto cache = model.new_cache();
    model.prefill(*cache, toks, nullptr, expected.data());
  }
  std::vector<std::vector<float>> got(4, std::vector<float>(c.vocab));
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] {
      auto cache = model.new_cache();
      model.prefill(*cache, std::span<const int>(toks.data(), 3), nullptr, nullptr);
      for (size_t t = 3; t < toks.size(); ++t) {
        Model::Cache* cp = cache.get();
        model.decode(std::span<Model::Cache* const>(&cp, 1), std::span<const int>(&toks[t], 1),
                     got[i].data());
      }
    });
  for (auto& t : threads) t.join();
  for (const auto& g : got) CHECK(max_abs_diff(g.data(), expected.data(), c.vocab) <= 1e-5);
}

TEST_CASE("a model with trained-looking weights predicts differently per context") {
  const Config c = *builtin("tiny-gpt");
  const Model model(c, model_test::spread_weights(c, 0.1, 5));
  std::vector<float> a(c.vocab), b(c.vocab);
  auto ca = model.new_cache(), cb = model.new_cache();
  model.prefill(*ca, encode_text("hello"), nullptr, a.data());
  model.prefill(*cb, encode_text("world"), nullptr, b.data());
  CHECK(max_abs_diff(a.data(), b.data(), c.vocab) > 1e-3);
  for (float x : a) CHECK(std::isfinite(x));
}

TEST_CASE("bad weights and bad inputs are refused with clear messages") {
  const Config c = model_test::micro_config();
  Weights w = init_weights(c);
  Weights wrong_shape = w;
  wrong_shape[3].shape = {4, 16};
  CHECK_THROWS_WITH_AS(Model(c, wrong_shape),
                       doctest::Contains("model.layers.0.self_attn.k_proj.weight has shape"),
                       std::invalid_argument);
  Weights missing = w;
  missing.pop_back();
  CHECK_THROWS_WITH_AS(Model(c, missing), doctest::Contains("missing tensor model.norm.weight"),
                       std::invalid_argument);
  Weights extra = w;
  extra.push_back({"lm_head.bias", {258}, std::vector<float>(258)});
  CHECK_THROWS_WITH_AS(Model(c, extra), doctest::Contains("unexpected tensor lm_head.bias"),
                       std::invalid_argument);
  // An untied head (lm_head.weight, what merging an lm_head adapter writes) is the one
  // optional tensor, checked like the others.
  Weights head = w;
  head.push_back({"lm_head.weight", {258, 4}, std::vector<float>(258 * 4)});
  CHECK_THROWS_WITH_AS(Model(c, head), doctest::Contains("lm_head.weight has shape [258, 4]"),
                       std::invalid_argument);

  const Model model(c, w);
  auto cache = model.new_cache();
  const std::vector<int> bad{1, 258};
  CHECK_THROWS_WITH_AS(model.prefill(*cache, bad, nullptr, nullptr),
                       doctest::Contains("token 258 at index 1"), std::invalid_argument);
  CHECK(Model::cache_length(*cache) == 0);
  const std::vector<int> too_long(c.max_seq + 1, 5);
  CHECK_THROWS_WITH_AS(model.prefill(*cache, too_long, nullptr, nullptr),
                       doctest::Contains("exceeds max_seq"), std::invalid_argument);
  Model::Cache* twice[2] = {cache.get(), cache.get()};
  const int toks[2] = {1, 2};
  std::vector<float> logits(2 * c.vocab);
  CHECK_THROWS_WITH_AS(model.decode(twice, toks, logits.data()),
                       doctest::Contains("more than once"), std::invalid_argument);
  const Model other(c, w);
  auto foreign = other.new_cache();
  CHECK_THROWS_WITH_AS(model.prefill(*foreign, toks, nullptr, nullptr),
                       doctest::Contains("created by another model"), std::invalid_argument);
}
