#pragma once
#include <cstdint>
#include <random>

#include "emulator/model/model.hpp"

namespace model_test {

// A configuration small enough for exhaustive checks.
inline flare::model::Config micro_config() {
  flare::model::Config c;
  c.name = "micro";
  c.d_model = 8;
  c.n_layers = 2;
  c.n_heads = 2;
  c.d_ff = 12;
  c.max_seq = 32;
  c.seed = 7;
  return c;
}

// Weights with a larger spread than init_weights, so that logits depend
// strongly on every parameter; norms vary around 1. bf16-exact.
inline flare::model::Weights spread_weights(const flare::model::Config& c, double sigma,
                                            uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, sigma);
  flare::model::Weights w = flare::model::init_weights(c);
  for (auto& t : w)
    for (float& x : t.data) x = float(t.shape.size() == 1 ? 1.0 + normal(rng) : normal(rng));
  flare::model::round_to_bf16(w);
  return w;
}

}  // namespace model_test
