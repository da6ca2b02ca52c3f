// The float matrix product compiled for AVX2 (selected at run time), so that
// the library still runs on any x86-64 CPU.
#include "emulator/model/kernels.hpp"

namespace flare::model::detail {

__attribute__((target("avx2"))) void matmul_f32_avx2(const float* x, int rows, int in,
                                                     const float* wt, int out, float* y,
                                                     bool accumulate) {
  matmul_tiled<float, 32, 4>(x, rows, in, wt, out, y, accumulate);
}

bool cpu_has_avx2() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return has;
}

}  // namespace flare::model::detail
