#pragma once
// Seeded pseudo-random streams for sampling. Every choice of every request owns
// its own stream, derived from (seed, choice index), so a seeded request draws
// the same numbers no matter what else the engine is serving at the time.
#include <cstdint>

namespace flare::engine {

// xoshiro256** seeded through SplitMix64: fully specified, so the same seed
// gives the same numbers on every platform and standard library.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next_u64();
  double next_unit();  // uniform in [0, 1), 53 random bits

 private:
  uint64_t s_[4];
};

uint64_t splitmix64(uint64_t& state);

// The stream of choice `index` of a request seeded with `seed`.
Rng choice_stream(uint64_t seed, int index);

// A fresh seed for a request that gave none: distinct per call and per process run.
uint64_t fresh_seed();

}  // namespace flare::engine
