#pragma once
// Register tiles of the float product, written once against an instruction
// set's vector type S (Avx2 in kernels_avx2.cpp, Avx512 in kernels_avx512.cpp,
// each file compiled with its -m flags). The unnamed namespace keeps each
// file's copy apart, so no code of one set can stand in for the other's.
// Include nothing here that defines inline functions shared with other files.
#include <cstddef>

namespace flare::model::detail {
namespace {

// R rows x NV vectors of y: the k loop loads NV vectors of row k of wt and
// broadcasts each row's x(i, k); the last vector is masked when kTail.
template <class S, int R, int NV, bool kTail>
inline __attribute__((always_inline)) void tile(const float* x, size_t x_row, size_t x_k, int in,
                                                const float* wt, int out, float* y, bool accumulate,
                                                typename S::Mask tail) {
  using V = typename S::V;
  V c[R][NV];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < NV; ++j) c[i][j] = S::zero();
  const float* w = wt;
  const float* xk = x;
  for (int k = 0; k < in; ++k, w += out, xk += x_k) {
    V b[NV];
    for (int j = 0; j < NV; ++j)
      b[j] = kTail && j == NV - 1 ? S::load(w + j * S::N, tail) : S::load(w + j * S::N);
    for (int i = 0; i < R; ++i) {
      const V a = S::broadcast(xk + i * x_row);
      for (int j = 0; j < NV; ++j) c[i][j] = S::fma(a, b[j], c[i][j]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < NV; ++j) {
      float* dst = y + size_t(i) * out + j * S::N;
      if (kTail && j == NV - 1) {
        if (accumulate) c[i][j] = S::add(S::load(dst, tail), c[i][j]);
        S::store(dst, c[i][j], tail);
      } else {
        if (accumulate) c[i][j] = S::add(S::load(dst), c[i][j]);
        S::store(dst, c[i][j]);
      }
    }
}

// The `m` (< R) rows left after the full tiles, as one tile of m rows.
template <class S, int R, int NV, bool kTail, int M = R - 1>
inline __attribute__((always_inline)) void tile_rest(int m, const float* x, size_t x_row,
                                                     size_t x_k, int in, const float* wt, int out,
                                                     float* y, bool accumulate,
                                                     typename S::Mask tail) {
  if constexpr (M > 0) {
    if (m == M) return tile<S, M, NV, kTail>(x, x_row, x_k, in, wt, out, y, accumulate, tail);
    tile_rest<S, R, NV, kTail, M - 1>(m, x, x_row, x_k, in, wt, out, y, accumulate, tail);
  }
}

// Every row of one column block of NV vectors starting at wt / y.
template <class S, int R, int NV, bool kTail>
void column_block(const float* x, size_t x_row, size_t x_k, int rows, int in, const float* wt,
                  int out, float* y, bool accumulate, typename S::Mask tail) {
  int r = 0;
  for (; r + R <= rows; r += R)
    tile<S, R, NV, kTail>(x + r * x_row, x_row, x_k, in, wt, out, y + size_t(r) * out, accumulate,
                          tail);
  if (r < rows)
    tile_rest<S, R, NV, kTail>(rows - r, x + r * x_row, x_row, x_k, in, wt, out,
                               y + size_t(r) * out, accumulate, tail);
}

// Column blocks of two vectors; the last block has one or two, its last masked.
template <class S, int R>
void product(const float* x, size_t x_row, size_t x_k, int rows, int in, const float* wt, int out,
             float* y, bool accumulate) {
  constexpr int N = S::N;
  const typename S::Mask all = S::mask(N);
  int o = 0;
  for (; o + 2 * N <= out; o += 2 * N)
    column_block<S, R, 2, false>(x, x_row, x_k, rows, in, wt + o, out, y + o, accumulate, all);
  const int rest = out - o;
  if (rest > N)
    column_block<S, R, 2, true>(x, x_row, x_k, rows, in, wt + o, out, y + o, accumulate,
                                S::mask(rest - N));
  else if (rest > 0)
    column_block<S, R, 1, true>(x, x_row, x_k, rows, in, wt + o, out, y + o, accumulate,
                                S::mask(rest));
}

}  // namespace
}  // namespace flare::model::detail
