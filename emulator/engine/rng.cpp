#include "emulator/engine/rng.hpp"

#include <atomic>
#include <chrono>
#include <random>

namespace flare::engine {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

Rng::Rng(uint64_t seed) {
  uint64_t sm = seed;
  for (auto& word : s_) word = splitmix64(sm);
}

static inline uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

uint64_t Rng::next_u64() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::next_unit() {
  return static_cast<double>(next_u64() >> 11) * 0x1.0p-53;
}

Rng choice_stream(uint64_t seed, int index) {
  // Hash seed and index separately before combining, so nearby seeds and
  // nearby indices do not produce related streams.
  uint64_t a = seed;
  uint64_t b = 0x6a09e667f3bcc909ULL + static_cast<uint64_t>(index);
  const uint64_t hs = splitmix64(a);
  const uint64_t hi = splitmix64(b);
  return Rng(hs ^ rotl(hi, 32) ^ 0x3c6ef372fe94f82bULL);
}

uint64_t fresh_seed() {
  static const uint64_t base = [] {
    std::random_device rd;
    const uint64_t hi = rd();
    const uint64_t lo = rd();
    return (hi << 32) ^ lo ^
           static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }();
  static std::atomic<uint64_t> counter{0};
  uint64_t state = base + counter.fetch_add(1, std::memory_order_relaxed) * 0x9e3779b97f4a7c15ULL;
  return splitmix64(state);
}

}  // namespace flare::engine
