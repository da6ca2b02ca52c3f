// The float product for AVX-512 (this file is compiled with -mavx512f -mfma
// and only called when the CPU has AVX-512F).
#include <immintrin.h>

#include "emulator/model/matmul_isa.hpp"
#include "emulator/model/matmul_tiles.hpp"

namespace flare::model::detail {

namespace {
struct Avx512 {
  using V = __m512;
  using Mask = __mmask16;
  static constexpr int N = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V load(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static void store(float* p, V v, Mask m) { _mm512_mask_storeu_ps(p, m, v); }
  static V broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static Mask mask(int lanes) { return Mask((1u << lanes) - 1u); }  // the first `lanes` lanes
};
}  // namespace

// 8 rows x 2 vectors: 16 accumulators of the 32 registers.
void matmul_f32_avx512(const float* x, size_t x_row, size_t x_k, int rows, int in, const float* wt,
                       int out, float* y, bool accumulate) {
  product<Avx512, 8>(x, x_row, x_k, rows, in, wt, out, y, accumulate);
}

}  // namespace flare::model::detail
