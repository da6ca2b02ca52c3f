#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <vector>

#include "emulator/engine/rng.hpp"
#include "emulator/engine/sampling.hpp"

using namespace flare::engine;

namespace {

std::set<int> support_ids(const TokenDistribution& d) {
  std::set<int> ids;
  for (const auto& e : d.support()) ids.insert(e.token);
  return ids;
}

double support_mass(const TokenDistribution& d) {
  double sum = 0;
  for (const auto& e : d.support()) sum += e.prob;
  return sum;
}

// logits whose softmax (temperature 1) is exactly probs
std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

}  // namespace

TEST_CASE("log-softmax of the raw logits is the model distribution") {
  TokenDistribution d;
  d.set_logits(std::vector<float>{1.0f, 2.0f, 3.0f, 0.5f});
  double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0) + std::exp(0.5);
  CHECK(d.logprob(2) == doctest::Approx(3.0 - std::log(z)).epsilon(1e-12));
  CHECK(d.logprob(3) == doctest::Approx(0.5 - std::log(z)).epsilon(1e-12));
  double mass = 0;
  for (int i = 0; i < 4; ++i) mass += std::exp(d.logprob(i));
  CHECK(mass == doctest::Approx(1.0).epsilon(1e-12));
}

TEST_CASE("top alternatives are the most likely tokens, ties by lower id") {
  TokenDistribution d;
  d.set_logits(std::vector<float>{0.0f, 5.0f, 1.0f, 5.0f, 3.0f});
  auto top = d.top(3);
  REQUIRE(top.size() == 3);
  CHECK(top[0].first == 1);
  CHECK(top[1].first == 3);
  CHECK(top[2].first == 4);
  CHECK(top[0].second == doctest::Approx(d.logprob(1)));
  CHECK(d.top(0).empty());
  CHECK(d.top(100).size() == 5);
}

TEST_CASE("greedy keeps only the argmax and its sampling logprob is 0") {
  TokenDistribution d;
  Rng rng(1);
  std::vector<float> logits{0.1f, 2.0f, 7.0f, 7.0f, -1.0f};
  SamplingConfig c{.temperature = 0.0, .top_p = 0.3, .top_k = 2};
  for (int i = 0; i < 20; ++i) {
    auto s = sample_token(d, logits, c, rng);
    CHECK(s.token == 2);  // first of the tied maxima
    CHECK(s.sampling_logprob == 0.0);
    CHECK(s.logprob == doctest::Approx(d.logprob(2)));
    CHECK(s.logprob < 0);
  }
  // greedy draws nothing from the stream
  Rng fresh(1);
  CHECK(rng.next_u64() == fresh.next_u64());
}

TEST_CASE("temperature scales the logits before the softmax") {
  TokenDistribution d;
  std::vector<float> logits{1.0f, 2.0f, 4.0f};
  d.set_logits(logits);
  d.truncate({.temperature = 0.5, .top_p = 1.0, .top_k = 0});
  double z = std::exp(2.0) + std::exp(4.0) + std::exp(8.0);
  CHECK(d.sampling_logprob(2) == doctest::Approx(8.0 - std::log(z)).epsilon(1e-12));
  CHECK(d.sampling_logprob(0) == doctest::Approx(2.0 - std::log(z)).epsilon(1e-12));
  // the model logprob is unaffected by temperature
  CHECK(d.logprob(2) ==
        doctest::Approx(4.0 - std::log(std::exp(1.0) + std::exp(2.0) + std::exp(4.0))));
  CHECK(support_mass(d) == doctest::Approx(1.0).epsilon(1e-12));
}

TEST_CASE("top-k keeps exactly the k most likely tokens, renormalised") {
  TokenDistribution d;
  auto logits = logits_of({0.05, 0.30, 0.10, 0.25, 0.20, 0.10});
  d.set_logits(logits);
  d.truncate({.temperature = 1.0, .top_p = 1.0, .top_k = 3});
  CHECK(support_ids(d) == std::set<int>{1, 3, 4});
  CHECK(support_mass(d) == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(d.sampling_logprob(1) == doctest::Approx(std::log(0.30 / 0.75)).epsilon(1e-6));
  CHECK(std::isinf(d.sampling_logprob(0)));
  // k >= vocab keeps everything
  d.truncate({.temperature = 1.0, .top_p = 1.0, .top_k = 6});
  CHECK(support_ids(d).size() == 6);
  d.truncate({.temperature = 1.0, .top_p = 1.0, .top_k = 1000});
  CHECK(support_ids(d).size() == 6);
}

TEST_CASE("top-p keeps the smallest most-likely set whose mass reaches p") {
  TokenDistribution d;
  auto logits = logits_of({0.05, 0.40, 0.10, 0.25, 0.20});
  d.set_logits(logits);
  // 0.40 < 0.6 -> keep next; 0.65 >= 0.6 -> stop
  d.truncate({.temperature = 1.0, .top_p = 0.6, .top_k = 0});
  CHECK(support_ids(d) == std::set<int>{1, 3});
  CHECK(d.sampling_logprob(1) == doctest::Approx(std::log(0.40 / 0.65)).epsilon(1e-6));
  CHECK(d.sampling_logprob(3) == doctest::Approx(std::log(0.25 / 0.65)).epsilon(1e-6));
  // a p below the top token's mass keeps only the top token
  d.truncate({.temperature = 1.0, .top_p = 0.1, .top_k = 0});
  CHECK(support_ids(d) == std::set<int>{1});
  CHECK(d.sampling_logprob(1) == doctest::Approx(0.0));
  // p = 0.8 needs 0.40 + 0.25 + 0.20
  d.truncate({.temperature = 1.0, .top_p = 0.8, .top_k = 0});
  CHECK(support_ids(d) == std::set<int>{1, 3, 4});
  CHECK(support_mass(d) == doctest::Approx(1.0).epsilon(1e-12));
}

TEST_CASE("top-p applies to what top-k kept") {
  TokenDistribution d;
  auto logits = logits_of({0.05, 0.40, 0.10, 0.25, 0.20});
  d.set_logits(logits);
  // top-k 2 -> {0.40, 0.25} renormalised to {0.615, 0.385}; p = 0.6 keeps only token 1
  d.truncate({.temperature = 1.0, .top_p = 0.6, .top_k = 2});
  CHECK(support_ids(d) == std::set<int>{1});
  // p = 0.7 needs both
  d.truncate({.temperature = 1.0, .top_p = 0.7, .top_k = 2});
  CHECK(support_ids(d) == std::set<int>{1, 3});
  CHECK(d.sampling_logprob(3) == doctest::Approx(std::log(0.25 / 0.65)).epsilon(1e-6));
}

TEST_CASE("sampling frequencies follow the sampled distribution") {
  TokenDistribution d;
  Rng rng(42);
  auto logits = logits_of({0.05, 0.40, 0.10, 0.25, 0.20});
  SamplingConfig c{.temperature = 1.0, .top_p = 0.8, .top_k = 0};  // keeps {1, 3, 4}
  std::map<int, int> counts;
  const int draws = 20000;
  for (int i = 0; i < draws; ++i) {
    auto s = sample_token(d, logits, c, rng);
    counts[s.token]++;
    CHECK(std::exp(s.sampling_logprob) > 0);
  }
  CHECK(counts.count(0) == 0);
  CHECK(counts.count(2) == 0);
  CHECK(counts[1] / double(draws) == doctest::Approx(0.40 / 0.85).epsilon(0.05));
  CHECK(counts[3] / double(draws) == doctest::Approx(0.25 / 0.85).epsilon(0.05));
  CHECK(counts[4] / double(draws) == doctest::Approx(0.20 / 0.85).epsilon(0.05));
}

TEST_CASE("sampled token reports both logprobs consistently") {
  TokenDistribution d;
  Rng rng(7);
  auto logits = logits_of({0.1, 0.2, 0.3, 0.4});
  auto s = sample_token(d, logits, {.temperature = 1.0, .top_p = 1.0, .top_k = 0}, rng);
  // untruncated, temperature 1: the two distributions coincide
  CHECK(s.sampling_logprob == doctest::Approx(s.logprob).epsilon(1e-9));
  s = sample_token(d, logits, {.temperature = 2.0, .top_p = 1.0, .top_k = 0}, rng);
  CHECK(s.logprob == doctest::Approx(std::log(0.1 * (s.token + 1))).epsilon(1e-6));
  CHECK(s.sampling_logprob != doctest::Approx(s.logprob));
}

TEST_CASE("seeded streams are reproducible and distinct per choice") {
  Rng a = choice_stream(123, 0), b = choice_stream(123, 0), c = choice_stream(123, 1),
      e = choice_stream(124, 0);
  for (int i = 0; i < 100; ++i) {
    const uint64_t x = a.next_u64();
    CHECK(x == b.next_u64());
    CHECK(x != c.next_u64());
    CHECK(x != e.next_u64());
  }
  Rng r(5);
  for (int i = 0; i < 1000; ++i) {
    const double u = r.next_unit();
    CHECK(u >= 0.0);
    CHECK(u < 1.0);
  }
  CHECK(fresh_seed() != fresh_seed());
}
