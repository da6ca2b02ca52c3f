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

namespace flare::model::detail {

// y[r, :] = x[r, :] · wt, with wt stored [in, out]. When `accumulate`, the
// product is added to y instead of replacing it.
template <class T>
void matmul(const T* __restrict x, int rows, int in, const T* __restrict wt, int out,
            T* __restrict y, bool accumulate = false) {
  constexpr int kRows = 4;
  constexpr int kCols = 16;
  int r = 0;
  for (; r + kRows <= rows; r += kRows) {
    const T* xr = x + size_t(r) * in;
    T* yr = y + size_t(r) * out;
    int o = 0;
    for (; o + kCols <= out; o += kCols) {
      T acc[kRows][kCols] = {};
      for (int k = 0; k < in; ++k) {
        const T* w = wt + size_t(k) * out + o;
        for (int i = 0; i < kRows; ++i) {
          const T a = xr[size_t(i) * in + k];
          for (int j = 0; j < kCols; ++j) acc[i][j] += a * w[j];
        }
      }
      for (int i = 0; i < kRows; ++i)
        for (int j = 0; j < kCols; ++j) {
          T& dst = yr[size_t(i) * out + o + j];
          dst = accumulate ? dst + acc[i][j] : acc[i][j];
        }
    }
    for (; o < out; ++o)
      for (int i = 0; i < kRows; ++i) {
        T acc = 0;
        for (int k = 0; k < in; ++k) acc += xr[size_t(i) * in + k] * wt[size_t(k) * out + o];
        T& dst = yr[size_t(i) * out + o];
        dst = accumulate ? dst + acc : acc;
      }
  }
  for (; r < rows; ++r) {
    const T* xr = x + size_t(r) * in;
    T* yr = y + size_t(r) * out;
    int o = 0;
    for (; o + kCols <= out; o += kCols) {
      T acc[kCols] = {};
      for (int k = 0; k < in; ++k) {
        const T* w = wt + size_t(k) * out + o;
        const T a = xr[k];
        for (int j = 0; j < kCols; ++j) acc[j] += a * w[j];
      }
      for (int j = 0; j < kCols; ++j) yr[o + j] = accumulate ? yr[o + j] + acc[j] : acc[j];
    }
    for (; o < out; ++o) {
      T acc = 0;
      for (int k = 0; k < in; ++k) acc += xr[k] * wt[size_t(k) * out + o];
      yr[o] = accumulate ? yr[o] + acc : acc;
    }
  }
}

// dw[o, k] += Σ_r dy[r, o] · x[r, k]  (the weight gradient of y = x·Wᵀ, W [out, in]).
template <class T>
void matmul_weight_grad(const T* __restrict dy, int rows, int out, const T* __restrict x, int in,
                        T* __restrict dw) {
  for (int o = 0; o < out; ++o) {
    T* row = dw + size_t(o) * in;
    for (int r = 0; r < rows; ++r) {
      const T a = dy[size_t(r) * out + o];
      if (a == T(0)) continue;
      const T* xr = x + size_t(r) * in;
      for (int k = 0; k < in; ++k) row[k] += a * xr[k];
    }
  }
}

// y = x / rms(x) * g; returns 1 / rms(x).
template <class T>
T rmsnorm_row(const T* __restrict x, const T* __restrict g, int d, T eps, T* __restrict y) {
  T ss = 0;
  for (int i = 0; i < d; ++i) ss += x[i] * x[i];
  const T inv = T(1) / std::sqrt(ss / T(d) + eps);
  for (int i = 0; i < d; ++i) y[i] = x[i] * inv * g[i];
  return inv;
}

// Given dy for y = rmsnorm(x)·g: dx += ..., dg += ...
template <class T>
void rmsnorm_row_backward(const T* __restrict x, const T* __restrict g, int d, T inv,
                          const T* __restrict dy, T* __restrict dx, T* __restrict dg) {
  T dot = 0;
  for (int i = 0; i < d; ++i) {
    dg[i] += dy[i] * x[i] * inv;
    dot += dy[i] * g[i] * x[i];
  }
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

// One query head against n keys/values (rows `stride` apart):
// probs = softmax(q·kᵀ·scale), out = Σ probs·v.
template <class T>
void attend_row(const T* __restrict q, const T* __restrict k, const T* __restrict v, int n,
                size_t stride, int head_dim, T scale, T* __restrict probs, T* __restrict out) {
  T mx = -INFINITY;
  for (int s = 0; s < n; ++s) {
    const T* ks = k + s * stride;
    T dot = 0;
    for (int i = 0; i < head_dim; ++i) dot += q[i] * ks[i];
    probs[s] = dot * scale;
    mx = std::max(mx, probs[s]);
  }
  T sum = 0;
  for (int s = 0; s < n; ++s) {
    probs[s] = std::exp(probs[s] - mx);
    sum += probs[s];
  }
  const T inv = T(1) / sum;
  for (int i = 0; i < head_dim; ++i) out[i] = 0;
  for (int s = 0; s < n; ++s) {
    probs[s] *= inv;
    const T p = probs[s];
    const T* vs = v + s * stride;
    for (int i = 0; i < head_dim; ++i) out[i] += p * vs[i];
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

template <class T>
T silu(T a) {
  return a / (T(1) + std::exp(-a));
}

}  // namespace flare::model::detail
