#pragma once
// Causal multi-head attention of a whole training sequence, head by head as
// matrix products (the kernels of kernels.hpp), forward and backward. Inference
// keeps attend_heads (one row at a time over a KV cache); both compute the same
// softmax(q·kᵀ·scale)·v, the products here in the matmul kernels' summation order.
#include <vector>

#include "emulator/model/kernels.hpp"

namespace flare::model::detail {

// Per-head scratch of one sequence: a head's slices copied contiguous.
template <class T>
struct AttentionWork {
  std::vector<T> a, b, c, d, nn;  // [n, hd] x 3, [hd, n] and [n, n]
  void resize(size_t n, size_t hd) {
    for (auto* v : {&a, &b, &c, &d}) v->resize(n * hd);
    nn.resize(n * n);
  }
};

// Copies head h's columns of x [n, d] into out [n, hd] (or out [hd, n] when `transposed`).
template <class T>
void head_slice(const T* x, int n, int d, int h, int hd, T* out, bool transposed = false) {
  for (int t = 0; t < n; ++t)
    for (int i = 0; i < hd; ++i) {
      const T v = x[size_t(t) * d + size_t(h) * hd + i];
      if (transposed)
        out[size_t(i) * n + t] = v;
      else
        out[size_t(t) * hd + i] = v;
    }
}

template <class T>
void head_store(const T* slice, int n, int d, int h, int hd, T* x) {
  for (int t = 0; t < n; ++t)
    std::copy_n(slice + size_t(t) * hd, hd, x + size_t(t) * d + size_t(h) * hd);
}

// Rows of 16 see keys [0, r + 16) only: the rest of their probabilities are 0.
constexpr int kCausalBlock = 16;

// q, k, v, ctx [n, d]; probs [H, n, n] receives each head's softmax rows (0
// beyond the diagonal), which the backward needs.
template <class T>
void attention_forward(const T* q, const T* k, const T* v, int n, int n_heads, int hd, T scale,
                       T* probs, T* ctx, AttentionWork<T>& w) {
  const int d = n_heads * hd;
  w.resize(size_t(n), size_t(hd));
  for (int h = 0; h < n_heads; ++h) {
    T* p = probs + size_t(h) * n * n;
    head_slice(q, n, d, h, hd, w.a.data());
    head_slice(k, n, d, h, hd, w.d.data(), true);
    matmul(w.a.data(), n, hd, w.d.data(), n, p);  // scores q·kᵀ
    for (int t = 0; t < n; ++t) {
      T* row = p + size_t(t) * n;
      T mx = -INFINITY;
      for (int s = 0; s <= t; ++s) {
        row[s] *= scale;
        mx = std::max(mx, row[s]);
      }
      T sum = 0;
      for (int s = 0; s <= t; ++s) {
        row[s] = std::exp(row[s] - mx);
        sum += row[s];
      }
      const T inv = T(1) / sum;
      for (int s = 0; s <= t; ++s) row[s] *= inv;
      std::fill(row + t + 1, row + n, T(0));
    }
    head_slice(v, n, d, h, hd, w.b.data());
    for (int r = 0; r < n; r += kCausalBlock)
      matmul_strided(p + size_t(r) * n, size_t(n), 1, std::min(kCausalBlock, n - r),
                     std::min(n, r + kCausalBlock), w.b.data(), hd, w.c.data() + size_t(r) * hd,
                     false);
    head_store(w.c.data(), n, d, h, hd, ctx);
  }
}

// Given dctx, writes dq, dk and dv [n, d] (overwritten) for the forward that
// produced probs from q, k, v.
template <class T>
void attention_backward(const T* q, const T* k, const T* v, const T* probs, const T* dctx, int n,
                        int n_heads, int hd, T scale, T* dq, T* dk, T* dv, AttentionWork<T>& w) {
  const int d = n_heads * hd;
  w.resize(size_t(n), size_t(hd));
  for (int h = 0; h < n_heads; ++h) {
    const T* p = probs + size_t(h) * n * n;
    T* ds = w.nn.data();
    head_slice(dctx, n, d, h, hd, w.a.data());
    head_slice(v, n, d, h, hd, w.d.data(), true);
    matmul(w.a.data(), n, hd, w.d.data(), n, ds);  // dp = dctx · vᵀ
    // dv = pᵀ · dctx
    matmul_strided(p, 1, size_t(n), n, n, w.a.data(), hd, w.b.data(), false);
    head_store(w.b.data(), n, d, h, hd, dv);
    // ds = p ∘ (dp - Σ p·dp) · scale (the softmax's backward), 0 beyond the diagonal.
    for (int t = 0; t < n; ++t) {
      const T* pr = p + size_t(t) * n;
      T* row = ds + size_t(t) * n;
      T sum = 0;
      for (int s = 0; s <= t; ++s) sum += pr[s] * row[s];
      for (int s = 0; s <= t; ++s) row[s] = pr[s] * (row[s] - sum) * scale;
      std::fill(row + t + 1, row + n, T(0));
    }
    head_slice(k, n, d, h, hd, w.b.data());
    for (int r = 0; r < n; r += kCausalBlock)  // dq = ds · k
      matmul_strided(ds + size_t(r) * n, size_t(n), 1, std::min(kCausalBlock, n - r),
                     std::min(n, r + kCausalBlock), w.b.data(), hd, w.c.data() + size_t(r) * hd,
                     false);
    head_store(w.c.data(), n, d, h, hd, dq);
    head_slice(q, n, d, h, hd, w.b.data());
    matmul_strided(ds, 1, size_t(n), n, n, w.b.data(), hd, w.c.data(), false);  // dk = dsᵀ · q
    head_store(w.c.data(), n, d, h, hd, dk);
  }
}

}  // namespace flare::model::detail
