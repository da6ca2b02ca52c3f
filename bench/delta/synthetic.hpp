#pragma once
// Synthetic checkpoints for the delta benchmark: Gaussian weights (sigma 0.02)
// held in fp32 and one Adam-like step of them.
#include <cstdint>
#include <vector>

#include "delta/safetensors.hpp"

namespace flare::bench {

struct Layer {
  std::string name;
  delta::Shape shape;
};

// Tensor names and shapes adding up to at least `params` elements.
std::vector<Layer> synthetic_layout(uint64_t params);

// Fills `w` with N(0, sigma^2) draws (deterministic for a seed).
void gaussian_weights(std::vector<float>& w, float sigma, uint64_t seed);

// One Adam-like step: w[i] -= lr * u[i], where u is the normalised update
// m / (sqrt(v) + eps) of a noisy gradient (mostly of size about 1).
void adam_like_step(std::vector<float>& w, double lr, uint64_t seed);

// Round-to-nearest-even fp32 -> bf16 bit patterns.
void to_bf16(const std::vector<float>& w, std::vector<uint16_t>& out);

}  // namespace flare::bench
