#pragma once
// The LoRA term shared by training (sequence.hpp) and inference: every target
// projection y = x Wᵀ gains scale · (x Aᵀ) Bᵀ, computed after the base product
// with the same kernels, so trainer and sampler add it bit-identically.
#include <vector>

#include "emulator/model/kernels.hpp"
#include "emulator/model/layout.hpp"

namespace flare::model::detail {

// Target indices into LoraLayout::layers[i] (the order of kLoraTargetNames).
enum LoraTarget { kQ, kK, kV, kO, kGate, kUp, kDown };

// An adapter's parameters: `w` in LoraLayout order, `wt` their transposes
// (the products use A, B and Bᵀ).
template <class T>
struct LoraNet {
  const LoraLayout* lay;
  const T* w;
  const T* wt;
  T scale;
};

// y += scale · (x Aᵀ) Bᵀ over `rows` rows of x [rows, in] and y [rows, out];
// us receives scale · x Aᵀ [rows, rank], which the backward needs.
template <class T>
void lora_forward(const LoraNet<T>& lora, const LoraModule& m, const T* x, int rows, T* us, T* y) {
  const int r = lora.lay->rank;
  matmul_narrow(x, rows, m.in, lora.w + m.a, r, us);
  for (size_t i = 0; i < size_t(rows) * r; ++i) us[i] *= lora.scale;
  matmul(us, rows, r, lora.wt + m.b, m.out, y, true);
}

// Given dy for the lora_forward that produced `us` from x: adds ∂L/∂A and
// ∂L/∂B into `grad` (LoraLayout offsets; skipped when null) and ∂L/∂x into dx.
// `dus`, `scratch` and `tmp` are work space.
template <class T>
void lora_backward(const LoraNet<T>& lora, const LoraModule& m, const T* x, const T* us,
                   const T* dy, int rows, T* dx, T* grad, std::vector<T>& dus,
                   std::vector<T>& scratch, std::vector<T>& tmp) {
  const int r = lora.lay->rank;
  if (grad) {  // dB [out, r] += dyᵀ us, computed as its transpose usᵀ dy [r, out] (wide rows)
    scratch.resize(size_t(r) * rows);
    transpose(us, size_t(rows), size_t(r), scratch.data());
    tmp.resize(size_t(r) * m.out);
    matmul(scratch.data(), r, rows, dy, m.out, tmp.data());
    T* db = grad + m.b;
    for (int k = 0; k < r; ++k)
      for (int o = 0; o < m.out; ++o) db[size_t(o) * r + k] += tmp[size_t(k) * m.out + o];
  }
  matmul_narrow(dy, rows, m.out, lora.wt + m.b, r, dus.data());
  for (size_t i = 0; i < size_t(rows) * r; ++i) dus[i] *= lora.scale;
  if (grad) matmul_weight_grad(dus.data(), rows, r, x, m.in, grad + m.a);
  matmul(dus.data(), rows, r, lora.w + m.a, m.in, dx, true);
}

}  // namespace flare::model::detail

namespace flare::model {

struct Adapter::Impl {
  Config cfg;
  detail::LoraLayout lay;
  std::vector<float> w, wt;  // A and B in LoraLayout order, and their transposes
  float scale = 0;
  detail::LoraNet<float> net() const { return {&lay, w.data(), wt.data(), scale}; }
};

}  // namespace flare::model
