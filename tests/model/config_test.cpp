#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <stdexcept>

#include "emulator/model/model.hpp"

using namespace flare::model;

TEST_CASE("built-in configs are known by short name") {
  const Config* tiny = builtin("tiny-gpt");
  REQUIRE(tiny != nullptr);
  CHECK(tiny->name == "tiny-gpt");
  CHECK(tiny->vocab == 258);
  CHECK(tiny->d_model % tiny->n_heads == 0);
  const Config* m = builtin("tiny-gpt-m");
  REQUIRE(m != nullptr);
  CHECK(m->d_model > tiny->d_model);
  CHECK(builtin("gpt-5") == nullptr);
  CHECK(builtin_names() == std::vector<std::string>{"tiny-gpt", "tiny-gpt-m"});
}

TEST_CASE("parameter specs follow the canonical names and shapes") {
  const Config& c = *builtin("tiny-gpt");
  const auto specs = parameter_specs(c);
  REQUIRE(specs.size() == size_t(2 + 9 * c.n_layers));
  CHECK(specs.front().name == "model.embed_tokens.weight");
  CHECK(specs.front().shape == std::vector<int64_t>{258, c.d_model});
  CHECK(specs[1].name == "model.layers.0.input_layernorm.weight");
  CHECK(specs[2].name == "model.layers.0.self_attn.q_proj.weight");
  CHECK(specs[7].name == "model.layers.0.mlp.gate_proj.weight");
  CHECK(specs[7].shape == std::vector<int64_t>{c.d_ff, c.d_model});
  CHECK(specs[9].name == "model.layers.0.mlp.down_proj.weight");
  CHECK(specs[9].shape == std::vector<int64_t>{c.d_model, c.d_ff});
  CHECK(specs.back().name == "model.norm.weight");
}

TEST_CASE("init is deterministic per seed, bf16-exact, and roughly N(0, 0.02)") {
  Config c = *builtin("tiny-gpt");
  const Weights a = init_weights(c), b = init_weights(c);
  c.seed = 99;
  const Weights other = init_weights(c);
  REQUIRE(a.size() == b.size());
  bool differs = false;
  double sum_sq = 0;
  size_t count = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].data == b[i].data);
    differs |= a[i].data != other[i].data;
    for (float x : a[i].data) {
      CHECK(round_to_bf16(x) == x);
      if (a[i].shape.size() == 2) {
        sum_sq += double(x) * x;
        ++count;
      } else {
        CHECK(x == 1.0f);
      }
    }
  }
  CHECK(differs);
  const double sigma = std::sqrt(sum_sq / double(count));
  CHECK(sigma == doctest::Approx(0.02).epsilon(0.05));
}

TEST_CASE("bf16 rounding is round-to-nearest-even") {
  CHECK(round_to_bf16(1.0f) == 1.0f);
  // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
  CHECK(round_to_bf16(1.0f + 0x1.0p-8f) == 1.0f);
  // 1 + 3·2^-8 lies halfway between 1 + 2^-7 and 1 + 2^-6: ties go to 1 + 2^-6.
  CHECK(round_to_bf16(1.0f + 3 * 0x1.0p-8f) == 1.0f + 0x1.0p-6f);
  CHECK(round_to_bf16(1.0f + 0x1.0p-8f + 0x1.0p-20f) == 1.0f + 0x1.0p-7f);
  CHECK(round_to_bf16(-2.5f) == -2.5f);
  CHECK(std::isnan(round_to_bf16(std::numeric_limits<float>::quiet_NaN())));
  CHECK(round_to_bf16(std::numeric_limits<float>::infinity()) ==
        std::numeric_limits<float>::infinity());
}

TEST_CASE("byte tokenizer round-trips text; BOS/EOS decode to nothing") {
  const std::string text = "h\xc3\xa9llo\n";
  std::vector<int> toks = encode_text(text);
  CHECK(toks.size() == text.size());
  CHECK(toks[1] == 0xc3);
  toks.insert(toks.begin(), kBos);
  toks.push_back(kEos);
  CHECK(decode_tokens(toks) == text);
  const std::vector<int> bad{65, 300};
  CHECK_THROWS_WITH_AS(decode_tokens(bad), doctest::Contains("token 300 at index 1"),
                       std::invalid_argument);
}

TEST_CASE("unusable configs are refused") {
  Config c = *builtin("tiny-gpt");
  c.n_heads = 5;
  CHECK_THROWS_WITH_AS(parameter_specs(c), doctest::Contains("divisible by n_heads"),
                       std::invalid_argument);
}
