#pragma once
// Shared fixtures for the delta tests: random tensors and scratch directories.
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "delta/bit_kernels.hpp"
#include "delta/safetensors.hpp"

namespace flare::delta::testing {

// The instruction-set paths this CPU can run, narrowest first.
inline std::vector<Isa> runnable_isas() {
  std::vector<Isa> out{Isa::Portable};
  if (best_isa() != Isa::Portable) out.push_back(Isa::Avx2);
  if (best_isa() == Isa::Avx512) out.push_back(Isa::Avx512);
  return out;
}

inline std::vector<std::byte> random_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> out(n);
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    std::memcpy(out.data() + i, &v, std::min<size_t>(8, n - i));
  }
  return out;
}

inline Tensor random_tensor(std::string name, DType dtype, Shape shape, uint64_t seed) {
  size_t bytes = element_count(shape) * dtype_size(dtype);
  return {std::move(name), dtype, std::move(shape), random_bytes(bytes, seed)};
}

// Copy of `t` with roughly `fraction` of its elements given new random bit patterns.
inline Tensor perturb(const Tensor& t, double fraction, uint64_t seed) {
  Tensor out = t;
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution pick(fraction);
  const size_t es = dtype_size(t.dtype);
  for (size_t i = 0; i < t.data.size() / es; ++i)
    if (pick(rng))
      for (size_t b = 0; b < es; ++b) out.data[i * es + b] = static_cast<std::byte>(rng() & 0xff);
  return out;
}

inline std::vector<TensorView> views(const std::vector<Tensor>& ts) {
  std::vector<TensorView> v;
  for (const auto& t : ts) v.push_back(t.view());
  return v;
}

// A fresh directory removed with everything in it when the object dies.
struct ScratchDir {
  std::filesystem::path path;
  ScratchDir() {
    static int n = 0;
    path = std::filesystem::temp_directory_path() /
           ("flare-delta-test-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
    std::filesystem::create_directories(path);
  }
  ~ScratchDir() { std::filesystem::remove_all(path); }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
  size_t file_count() const {
    size_t n = 0;
    for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(path)) ++n;
    return n;
  }
};

inline void write_bytes(const std::string& path, const std::vector<std::byte>& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!bytes.empty()) std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
}

}  // namespace flare::delta::testing
