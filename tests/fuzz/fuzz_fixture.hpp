#pragma once
// The base checkpoint the delta fuzz target applies deltas to, and the next
// checkpoints its seed deltas encode. Deterministic, so committed seeds stay valid.
#include <cstring>
#include <string>
#include <vector>

#include "delta/safetensors.hpp"

namespace flare::delta::fuzz {

inline Tensor pattern_tensor(std::string name, DType dtype, Shape shape, uint32_t seed) {
  Tensor t{std::move(name), dtype, std::move(shape), {}};
  t.data.resize(element_count(t.shape) * dtype_size(dtype));
  uint32_t x = seed * 2654435761u + 1;
  for (auto& b : t.data) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b = static_cast<std::byte>(x & 0xff);
  }
  return t;
}

inline std::vector<Tensor> fuzz_base() {
  return {pattern_tensor("w", DType::BF16, {64, 40}, 1), pattern_tensor("f", DType::F32, {300}, 2),
          pattern_tensor("gone", DType::I16, {7}, 3), pattern_tensor("re", DType::F16, {4, 4}, 4)};
}

// Next checkpoints: a sparse step, a dense step, one that adds, removes and
// retypes, and one that changes every element (classed chunks).
inline std::vector<std::vector<Tensor>> fuzz_nexts() {
  auto base = fuzz_base();
  std::vector<std::vector<Tensor>> out;
  auto step = [&](double every, uint32_t seed) {
    std::vector<Tensor> n = base;
    uint32_t x = seed;
    for (auto& t : n)
      for (size_t i = 0; i < t.data.size(); ++i) {
        x = x * 1103515245u + 12345u;
        if ((x >> 8) % 1000 < every * 1000) t.data[i] ^= std::byte{1};
      }
    return n;
  };
  out.push_back(step(0.02, 5));
  out.push_back(step(0.6, 6));
  std::vector<Tensor> changed = {base[0], base[1], pattern_tensor("re", DType::BF16, {2, 8}, 7),
                                 pattern_tensor("added", DType::U8, {33}, 8)};
  out.push_back(changed);
  out.push_back(step(1.0, 9));
  return out;
}

inline std::vector<TensorView> views_of(const std::vector<Tensor>& ts) {
  std::vector<TensorView> v;
  for (const auto& t : ts) v.push_back(t.view());
  return v;
}

}  // namespace flare::delta::fuzz
