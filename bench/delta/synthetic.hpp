#pragma once
// Synthetic checkpoints for the delta benchmark: Gaussian weights (sigma 0.02)
// held in fp32 and one Adam-like step of them, or several steps of Adam.
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

// `steps` steps of Adam (beta1 0.9, beta2 0.999, eps 1e-8, bias-corrected)
// whose optimiser state persists across steps, on gradients g = mu + noise:
// mu is fixed per element (the direction the loss keeps pulling), noise is
// fresh each step, both about N(0,1). Successive updates are correlated as a
// real run's are. `before_last` gets the weights before the last step.
void adam_steps(std::vector<float>& w, std::vector<float>& before_last, double lr, int steps,
                uint64_t seed);

// Round-to-nearest-even fp32 -> bf16 bit patterns.
void to_bf16(const std::vector<float>& w, std::vector<uint16_t>& out);

}  // namespace flare::bench
