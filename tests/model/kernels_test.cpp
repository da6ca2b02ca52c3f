#include "emulator/model/kernels.hpp"

#include <doctest/doctest.h>

#include <random>

using namespace flare::model::detail;

TEST_CASE("matrix products are bit-identical across row groupings and instruction sets") {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  for (int out : {64, 192, 258, 7}) {
    const int in = 66, rows = 11;
    std::vector<float> x(size_t(rows) * in), wt(size_t(in) * out), base(size_t(rows) * out);
    for (float& v : x) v = normal(rng);
    for (float& v : wt) v = normal(rng);
    for (float& v : base) v = normal(rng);
    for (bool accumulate : {false, true}) {
      std::vector<float> all = base, generic = base, one_by_one = base;
      matmul(x.data(), rows, in, wt.data(), out, all.data(), accumulate);
      matmul_generic(x.data(), rows, in, wt.data(), out, generic.data(), accumulate);
      for (int r = 0; r < rows; ++r)
        matmul(x.data() + size_t(r) * in, 1, in, wt.data(), out,
               one_by_one.data() + size_t(r) * out, accumulate);
      CHECK(all == generic);
      CHECK(all == one_by_one);
      // And it is the product: spot-check one element in double.
      double ref = accumulate ? base[out + 3] : 0.0;
      for (int k = 0; k < in; ++k) ref += double(x[in + k]) * wt[size_t(k) * out + 3];
      CHECK(all[out + 3] == doctest::Approx(ref).epsilon(1e-4));
    }
  }
}
