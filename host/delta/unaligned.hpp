#pragma once
// An element of T read or written at any byte address (the tensors' bytes carry no alignment).
#include <cstddef>
#include <cstring>

namespace flare::delta {

template <typename T>
T load(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

template <typename T>
void store(std::byte* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

}  // namespace flare::delta
