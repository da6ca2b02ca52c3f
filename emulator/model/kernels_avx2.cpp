// The float product for AVX2 with FMA (this file is compiled with -mavx2 -mfma
// and only called when the CPU has both).
#include <immintrin.h>

#include "emulator/model/matmul_isa.hpp"
#include "emulator/model/matmul_tiles.hpp"

namespace flare::model::detail {

namespace {
struct Avx2 {
  using V = __m256;
  using Mask = __m256i;
  static constexpr int N = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V load(const float* p, Mask m) { return _mm256_maskload_ps(p, m); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static void store(float* p, V v, Mask m) { _mm256_maskstore_ps(p, m, v); }
  static V broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static Mask mask(int lanes) {  // the first `lanes` lanes
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
};
}  // namespace

// 6 rows x 2 vectors: 12 accumulators of the 16 registers.
void matmul_f32_avx2(const float* x, size_t x_row, size_t x_k, int rows, int in, const float* wt,
                     int out, float* y, bool accumulate) {
  product<Avx2, 6>(x, x_row, x_k, rows, in, wt, out, y, accumulate);
}

}  // namespace flare::model::detail
