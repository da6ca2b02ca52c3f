#pragma once
// The transformer's math kernels, templated on the scalar type so that the
// float path used by inference and training and the double path used by the
// gradient check run the very same code.
//
// Every output element is reduced in a fixed order that does not depend on how
// many rows are processed together, so a sequence's results are bit-identical
// whether it is fed in one go, token by token, or batched with others.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <vector>

#include "emulator/model/matmul_isa.hpp"

namespace flare::model::detail {

// 16-byte SIMD vectors (GCC vector extensions): 4 floats or 2 doubles.
template <class T>
struct Simd {
  typedef T V __attribute__((vector_size(16)));
  static constexpr int N = 16 / sizeof(T);
  static V load(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(T* p, V v) { std::memcpy(p, &v, sizeof v); }
};

// Σ a[i]·b[i] in a fixed order: two vector accumulators over full blocks,
// their lanes summed left to right, then the scalar tail.
template <class T>
inline T dot(const T* __restrict a, const T* __restrict b, int n) {
  using S = Simd<T>;
  using V = typename S::V;
  V acc0 = {}, acc1 = {};
  int i = 0;
  for (; i + 2 * S::N <= n; i += 2 * S::N) {
    acc0 += S::load(a + i) * S::load(b + i);
    acc1 += S::load(a + i + S::N) * S::load(b + i + S::N);
  }
  const V acc = acc0 + acc1;
  T sum = 0;
  for (int l = 0; l < S::N; ++l) sum += acc[l];
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// R rows of y = x · wt, columns [0, out), in tiles of two vectors of kBytes,
// with x(i, k) = x[i·x_row + k·x_k] (see matmul_isa.hpp). Each element is the
// k-ordered sum Σ_k x(i, k)·wt[k, o] of separate products and additions,
// started from 0 (then added to y when accumulating), whatever the tile shape:
// results are bit-identical for every R and kBytes.
template <class T, int R, int kBytes>
inline __attribute__((always_inline)) void matmul_rows(const T* __restrict x, size_t x_row,
                                                       size_t x_k, int in, const T* __restrict wt,
                                                       int out, T* __restrict y, bool accumulate) {
  typedef T V __attribute__((vector_size(kBytes)));
  constexpr int N = kBytes / sizeof(T), kCols = 2 * N;
  int o = 0;
  for (; o + kCols <= out; o += kCols) {
    V acc0[R] = {}, acc1[R] = {};
    const T* w = wt + o;
    for (int k = 0; k < in; ++k, w += out) {
      V w0, w1;
      std::memcpy(&w0, w, sizeof w0);
      std::memcpy(&w1, w + N, sizeof w1);
      for (int i = 0; i < R; ++i) {
        const T a = x[i * x_row + k * x_k];
        acc0[i] += a * w0;
        acc1[i] += a * w1;
      }
    }
    for (int i = 0; i < R; ++i) {
      T* dst = y + size_t(i) * out + o;
      if (accumulate) {
        V old0, old1;
        std::memcpy(&old0, dst, sizeof old0);
        std::memcpy(&old1, dst + N, sizeof old1);
        acc0[i] = old0 + acc0[i];
        acc1[i] = old1 + acc1[i];
      }
      std::memcpy(dst, &acc0[i], sizeof acc0[i]);
      std::memcpy(dst + N, &acc1[i], sizeof acc1[i]);
    }
  }
  for (; o < out; ++o)
    for (int i = 0; i < R; ++i) {
      T acc = 0;
      for (int k = 0; k < in; ++k) acc += x[i * x_row + k * x_k] * wt[size_t(k) * out + o];
      T& dst = y[size_t(i) * out + o];
      dst = accumulate ? dst + acc : acc;
    }
}

// The portable (SSE2) product for any scalar type, 4 rows at a time.
template <class T>
void matmul_generic(const T* x, size_t x_row, size_t x_k, int rows, int in, const T* wt, int out,
                    T* y, bool accumulate) {
  int r = 0;
  for (; r + 4 <= rows; r += 4)
    matmul_rows<T, 4, 16>(x + r * x_row, x_row, x_k, in, wt, out, y + size_t(r) * out, accumulate);
  for (; r < rows; ++r)
    matmul_rows<T, 1, 16>(x + r * x_row, x_row, x_k, in, wt, out, y + size_t(r) * out, accumulate);
}

// matmul over strided x: the float product runs on the widest instruction set
// of matmul_isa() (fused multiply-adds: its bits differ from the portable
// path's, but not between row groupings or between AVX2 and AVX-512).
template <class T>
void matmul_strided(const T* x, size_t x_row, size_t x_k, int rows, int in, const T* wt, int out,
                    T* y, bool accumulate) {
  if constexpr (std::is_same_v<T, float>) {
    switch (matmul_isa()) {
      case MatmulIsa::kAvx512:
        return matmul_f32_avx512(x, x_row, x_k, rows, in, wt, out, y, accumulate);
      case MatmulIsa::kAvx2Fma:
        return matmul_f32_avx2(x, x_row, x_k, rows, in, wt, out, y, accumulate);
      case MatmulIsa::kGeneric:
        break;
    }
  }
  matmul_generic(x, x_row, x_k, rows, in, wt, out, y, accumulate);
}

// y[r, :] = x[r, :] · wt, with wt stored [in, out]. When `accumulate`, the
// product is added to y instead of replacing it.
template <class T>
void matmul(const T* x, int rows, int in, const T* wt, int out, T* y, bool accumulate = false) {
  matmul_strided(x, size_t(in), 1, rows, in, wt, out, y, accumulate);
}

// y[r, o] = dot(x[r, :], w[o, :]) with w stored [out, in]: for narrow outputs
// (a LoRA rank), where matmul's column tiles would leave only its scalar tail.
// Each element is one dot() in its fixed order, whatever the row count.
template <class T>
void matmul_narrow(const T* x, int rows, int in, const T* w, int out, T* y) {
  for (int r = 0; r < rows; ++r)
    for (int o = 0; o < out; ++o)
      y[size_t(r) * out + o] = dot(x + size_t(r) * in, w + size_t(o) * in, in);
}

// dw[o, k] += Σ_r dy[r, o] · x[r, k]  (the weight gradient of y = x·Wᵀ, W [out, in]),
// the product dyᵀ · x read straight from dy's columns, summed over r in order.
template <class T>
void matmul_weight_grad(const T* dy, int rows, int out, const T* x, int in, T* dw) {
  matmul_strided(dy, 1, size_t(out), out, rows, x, in, dw, true);
}

// y = x / rms(x) * g; returns 1 / rms(x).
template <class T>
T rmsnorm_row(const T* __restrict x, const T* __restrict g, int d, T eps, T* __restrict y) {
  const T ss = dot(x, x, d);
  const T inv = T(1) / std::sqrt(ss / T(d) + eps);
  for (int i = 0; i < d; ++i) y[i] = x[i] * inv * g[i];
  return inv;
}

// Given dy for y = rmsnorm(x)·g: dx += ..., dg += ... (dg skipped when null).
template <class T>
void rmsnorm_row_backward(const T* __restrict x, const T* __restrict g, int d, T inv,
                          const T* __restrict dy, T* __restrict dx, T* __restrict dg) {
  T dot = 0;
  for (int i = 0; i < d; ++i) dot += dy[i] * g[i] * x[i];
  if (dg)
    for (int i = 0; i < d; ++i) dg[i] += dy[i] * x[i] * inv;
  const T c = dot * inv * inv * inv / T(d);
  for (int i = 0; i < d; ++i) dx[i] += dy[i] * g[i] * inv - x[i] * c;
}

// Rotates each head's pairs (i, i + half) by the angles of one position.
template <class T>
void rope_row(T* x, int n_heads, int head_dim, const T* cos, const T* sin) {
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    T* a = x + size_t(h) * head_dim;
    T* b = a + half;
    for (int i = 0; i < half; ++i) {
      const T x1 = a[i], x2 = b[i];
      a[i] = x1 * cos[i] - x2 * sin[i];
      b[i] = x1 * sin[i] + x2 * cos[i];
    }
  }
}

// The transpose of rope_row (rotation by the opposite angles), for gradients.
template <class T>
void rope_row_backward(T* dx, int n_heads, int head_dim, const T* cos, const T* sin) {
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    T* a = dx + size_t(h) * head_dim;
    T* b = a + half;
    for (int i = 0; i < half; ++i) {
      const T d1 = a[i], d2 = b[i];
      a[i] = d1 * cos[i] + d2 * sin[i];
      b[i] = -d1 * sin[i] + d2 * cos[i];
    }
  }
}

// All heads of one query row against n cached rows (keys/values `stride`
// apart, head h at columns [h·hd, (h+1)·hd)): for each head,
// probs[h·probs_stride + s] = softmax_s(q_h·k_s,h·scale) and
// out_h = Σ_s probs·v_s,h. Rows are walked in order, each read once and
// contiguously, which matters when many caches are far from the CPU.
template <class T>
void attend_heads(const T* __restrict q, const T* __restrict k, const T* __restrict v, int n,
                  size_t stride, int n_heads, int head_dim, T scale, T* __restrict probs,
                  size_t probs_stride, T* __restrict out) {
  constexpr int kMaxHeads = 64;  // check_config() enforces n_heads <= 64
  T mx[kMaxHeads];
  for (int h = 0; h < n_heads; ++h) mx[h] = -INFINITY;
  for (int s = 0; s < n; ++s) {
    const T* ks = k + s * stride;
    for (int h = 0; h < n_heads; ++h) {
      const T score = dot(q + h * head_dim, ks + h * head_dim, head_dim) * scale;
      probs[h * probs_stride + s] = score;
      mx[h] = std::max(mx[h], score);
    }
  }
  for (int h = 0; h < n_heads; ++h) {
    T* p = probs + h * probs_stride;
    T acc = 0;
    for (int s = 0; s < n; ++s) {
      p[s] = std::exp(p[s] - mx[h]);
      acc += p[s];
    }
    const T inv = T(1) / acc;
    for (int s = 0; s < n; ++s) p[s] *= inv;
  }
  const int d = n_heads * head_dim;
  for (int i = 0; i < d; ++i) out[i] = 0;
  for (int s = 0; s < n; ++s) {
    const T* vs = v + s * stride;
    for (int h = 0; h < n_heads; ++h) {
      const T p = probs[h * probs_stride + s];
      T* o = out + h * head_dim;
      const T* vh = vs + h * head_dim;
      for (int i = 0; i < head_dim; ++i) o[i] += p * vh[i];
    }
  }
}

// logp = logits - logsumexp(logits); may run in place.
template <class T>
void log_softmax_row(const T* logits, int n, T* logp) {
  T mx = logits[0];
  for (int i = 1; i < n; ++i) mx = std::max(mx, logits[i]);
  T sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(logits[i] - mx);
  const T lse = mx + std::log(sum);
  for (int i = 0; i < n; ++i) logp[i] = logits[i] - lse;
}

// silu(a) = a·σ(a); σ(a) lands in *sigmoid (for the backward).
template <class T>
T silu(T a, T* sigmoid) {
  const T den = T(1) + std::exp(-a);
  *sigmoid = T(1) / den;
  return a / den;
}

template <class T>
T silu(T a) {
  T unused;
  return silu(a, &unused);
}

}  // namespace flare::model::detail
