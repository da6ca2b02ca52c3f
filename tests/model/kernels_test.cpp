#include "emulator/model/kernels.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <random>

using namespace flare::model::detail;

namespace {

struct Case {
  int rows, in, out;
  std::vector<float> x, wt, base;
};

Case make_case(int rows, int in, int out, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  Case c{rows,
         in,
         out,
         std::vector<float>(size_t(rows) * in),
         std::vector<float>(size_t(in) * out),
         std::vector<float>(size_t(rows) * out)};
  for (auto* v : {&c.x, &c.wt, &c.base})
    for (float& e : *v) e = normal(rng);
  return c;
}

// What each instruction set must compute for y (+)= x·wt, element by element:
// a k-ordered chain from 0 of fused multiply-adds (fused) or of products and
// additions (portable), then old + sum.
std::vector<float> reference(const Case& c, bool accumulate, bool fused) {
  std::vector<float> y = c.base;
  for (int r = 0; r < c.rows; ++r)
    for (int o = 0; o < c.out; ++o) {
      float acc = 0;
      for (int k = 0; k < c.in; ++k) {
        const float a = c.x[size_t(r) * c.in + k], b = c.wt[size_t(k) * c.out + o];
        if (fused) {
          acc = std::fma(a, b, acc);
        } else {
          const volatile float p = a * b;  // rounded on its own, never contracted
          acc = acc + p;
        }
      }
      float& dst = y[size_t(r) * c.out + o];
      dst = accumulate ? dst + acc : acc;
    }
  return y;
}

using Kernel = void (*)(const float*, size_t, size_t, int, int, const float*, int, float*, bool);

void check_kernel(Kernel kernel, bool fused) {
  // Every column tail of both vector widths, row tails of every tile height.
  for (int out : {7, 8, 15, 16, 17, 24, 31, 32, 33, 48, 64, 192, 258})
    for (int rows : {1, 5, 6, 7, 8, 11, 17}) {
      const Case c = make_case(rows, 66, out, unsigned(out * 31 + rows));
      for (bool accumulate : {false, true}) {
        CAPTURE(out);
        CAPTURE(rows);
        CAPTURE(accumulate);
        std::vector<float> all = c.base, one_by_one = c.base;
        kernel(c.x.data(), size_t(c.in), 1, rows, c.in, c.wt.data(), out, all.data(), accumulate);
        for (int r = 0; r < rows; ++r)
          kernel(c.x.data() + size_t(r) * c.in, size_t(c.in), 1, 1, c.in, c.wt.data(), out,
                 one_by_one.data() + size_t(r) * out, accumulate);
        CHECK(all == reference(c, accumulate, fused));
        CHECK(all == one_by_one);
      }
    }
}

void generic_kernel(const float* x, size_t x_row, size_t x_k, int rows, int in, const float* wt,
                    int out, float* y, bool accumulate) {
  matmul_generic(x, x_row, x_k, rows, in, wt, out, y, accumulate);
}

}  // namespace

TEST_CASE("the portable product is the k-ordered sum of rounded products, for any rows") {
  check_kernel(generic_kernel, false);
}

TEST_CASE("the AVX2 and AVX-512 products are k-ordered FMA chains, for any rows") {
  if (matmul_isa() >= MatmulIsa::kAvx2Fma) check_kernel(matmul_f32_avx2, true);
  if (matmul_isa() >= MatmulIsa::kAvx512) check_kernel(matmul_f32_avx512, true);
  if (matmul_isa() == MatmulIsa::kGeneric) MESSAGE("no AVX2 + FMA on this CPU: nothing to check");
}

TEST_CASE(
    "matmul takes the chosen instruction set's path; the weight gradient reads dy's columns") {
  const Case c = make_case(9, 40, 33, 7);
  const bool fused = matmul_isa() != MatmulIsa::kGeneric;
  std::vector<float> y = c.base;
  matmul(c.x.data(), c.rows, c.in, c.wt.data(), c.out, y.data(), true);
  CHECK(y == reference(c, true, fused));
  // dw [9, 33] += dyᵀ x with dy [40, 9] and x [40, 33].
  const std::vector<float> dy = make_case(40, 9, 1, 8).x, x = make_case(40, 33, 1, 9).x;
  std::vector<float> dw(size_t(9) * 33, 0.5f);
  matmul_weight_grad(dy.data(), 40, 9, x.data(), 33, dw.data());
  for (int o = 0; o < 9; ++o)
    for (int k = 0; k < 33; ++k) {
      double ref = 0;
      for (int r = 0; r < 40; ++r) ref += double(dy[size_t(r) * 9 + o]) * x[size_t(r) * 33 + k];
      CHECK(dw[size_t(o) * 33 + k] == doctest::Approx(0.5 + ref).epsilon(1e-5));
    }
}
