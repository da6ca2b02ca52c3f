#pragma once
// splitmix64: a small, fixed generator so initial weights never depend on the
// standard library's implementation.
#include <cstdint>

namespace flare::model::detail {

struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in (0, 1]: never 0, so log() of it is finite.
  double uniform() { return double((next() >> 11) + 1) * 0x1.0p-53; }
};

}  // namespace flare::model::detail
