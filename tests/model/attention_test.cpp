// The training attention (whole sequence, per-head matrix products) against
// inference's row-at-a-time attend_heads, and its backward against central
// differences, on sequences longer than one causal block.
#include "emulator/model/attention.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <random>

using namespace flare::model::detail;

namespace {

constexpr int kHeads = 3, kHd = 6, kD = kHeads * kHd;

std::vector<double> random_matrix(int n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal;
  std::vector<double> m(size_t(n) * kD);
  for (double& x : m) x = normal(rng);
  return m;
}

// Σ ctx ∘ g for the training attention of q, k, v.
double weighted_ctx(const std::vector<double>& q, const std::vector<double>& k,
                    const std::vector<double>& v, const std::vector<double>& g, int n) {
  AttentionWork<double> w;
  std::vector<double> probs(size_t(kHeads) * n * n), ctx(size_t(n) * kD);
  attention_forward(q.data(), k.data(), v.data(), n, kHeads, kHd, 0.4, probs.data(), ctx.data(), w);
  double sum = 0;
  for (size_t i = 0; i < ctx.size(); ++i) sum += ctx[i] * g[i];
  return sum;
}

}  // namespace

TEST_CASE("training attention equals inference's row-at-a-time attention") {
  for (int n : {1, 15, 16, 17, 37}) {
    CAPTURE(n);
    const auto q = random_matrix(n, 1), k = random_matrix(n, 2), v = random_matrix(n, 3);
    AttentionWork<double> w;
    std::vector<double> probs(size_t(kHeads) * n * n), ctx(size_t(n) * kD);
    attention_forward(q.data(), k.data(), v.data(), n, kHeads, kHd, 0.4, probs.data(), ctx.data(),
                      w);
    std::vector<double> row_probs(size_t(kHeads) * n), row_ctx(kD);
    for (int t = 0; t < n; ++t) {
      attend_heads(q.data() + size_t(t) * kD, k.data(), v.data(), t + 1, size_t(kD), kHeads, kHd,
                   0.4, row_probs.data(), size_t(n), row_ctx.data());
      for (int i = 0; i < kD; ++i)
        CHECK(ctx[size_t(t) * kD + i] == doctest::Approx(row_ctx[i]).epsilon(1e-12));
      for (int h = 0; h < kHeads; ++h)
        for (int s = 0; s < n; ++s)
          CHECK(probs[(size_t(h) * n + t) * n + s] ==
                doctest::Approx(s <= t ? row_probs[size_t(h) * n + s] : 0.0).epsilon(1e-12));
    }
  }
}

TEST_CASE("training attention backward matches central differences") {
  const int n = 37;
  auto q = random_matrix(n, 4), k = random_matrix(n, 5), v = random_matrix(n, 6);
  const auto g = random_matrix(n, 7);
  AttentionWork<double> w;
  std::vector<double> probs(size_t(kHeads) * n * n), ctx(size_t(n) * kD);
  attention_forward(q.data(), k.data(), v.data(), n, kHeads, kHd, 0.4, probs.data(), ctx.data(), w);
  std::vector<double> dq(q.size()), dk(k.size()), dv(v.size());
  attention_backward(q.data(), k.data(), v.data(), probs.data(), g.data(), n, kHeads, kHd, 0.4,
                     dq.data(), dk.data(), dv.data(), w);
  std::mt19937 rng(8);
  for (auto [x, dx] : {std::pair{&q, &dq}, std::pair{&k, &dk}, std::pair{&v, &dv}})
    for (int trial = 0; trial < 40; ++trial) {
      const size_t i = rng() % x->size();
      const double keep = (*x)[i], h = 1e-5;
      (*x)[i] = keep + h;
      const double up = weighted_ctx(q, k, v, g, n);
      (*x)[i] = keep - h;
      const double down = weighted_ctx(q, k, v, g, n);
      (*x)[i] = keep;
      CAPTURE(i);
      CHECK((*dx)[i] == doctest::Approx((up - down) / (2 * h)).epsilon(1e-6));
    }
}
