#include "synthetic.hpp"

#include <cmath>
#include <cstring>
#include <thread>

namespace flare::bench {
namespace {

struct SplitMix {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return (static_cast<double>(next() >> 11) + 0.5) * 0x1.0p-53; }
};

template <typename F>
void split(size_t n, F fn) {
  unsigned t = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> threads;
  for (unsigned k = 0; k < t; ++k)
    threads.emplace_back([&, k] { fn(k, n * k / t, n * (k + 1) / t); });
  for (auto& th : threads) th.join();
}

// Pairs of standard normal draws by Box-Muller.
template <typename F>
void normals(size_t n, uint64_t seed, F sink) {
  split(n, [&](unsigned k, size_t begin, size_t end) {
    SplitMix rng{seed * 0x100000001b3ull + k};
    for (size_t i = begin; i < end; i += 2) {
      double r = std::sqrt(-2.0 * std::log(rng.uniform()));
      double a = 2.0 * M_PI * rng.uniform();
      sink(i, r * std::cos(a));
      if (i + 1 < end) sink(i + 1, r * std::sin(a));
    }
  });
}

}  // namespace

std::vector<Layer> synthetic_layout(uint64_t params) {
  // A transformer-like mix: embeddings, square attention blocks, wider MLPs, norms.
  const uint64_t d = 2048;
  std::vector<Layer> out;
  out.push_back({"embed.weight", {16384, d}});
  uint64_t total = 16384 * d;
  for (int layer = 0; total < params; ++layer) {
    std::string p = "layers." + std::to_string(layer) + ".";
    for (const char* n : {"attn.q", "attn.k", "attn.v", "attn.o"}) {
      out.push_back({p + n + ".weight", {d, d}});
      total += d * d;
    }
    out.push_back({p + "mlp.up.weight", {4 * d, d}});
    out.push_back({p + "mlp.down.weight", {d, 4 * d}});
    out.push_back({p + "norm.weight", {d}});
    total += 8 * d * d + d;
  }
  return out;
}

void gaussian_weights(std::vector<float>& w, float sigma, uint64_t seed) {
  normals(w.size(), seed, [&](size_t i, double z) { w[i] = static_cast<float>(sigma * z); });
}

void adam_like_step(std::vector<float>& w, double lr, uint64_t seed) {
  // m/(sqrt(v)+eps) for a gradient whose per-element noise scale varies: the
  // ratio is about N(0,1) in size, clipped as Adam's bias-corrected ratio is.
  normals(w.size(), seed, [&](size_t i, double z) {
    double u = std::fmax(-3.0, std::fmin(3.0, z));
    w[i] = static_cast<float>(w[i] - lr * u);
  });
}

namespace {
// About N(0,1) from one 64-bit hash of (seed, i): the sum of four 16-bit
// uniforms, centred and scaled (cheap, and smooth enough for gradient noise).
inline float hashed_normal(uint64_t seed, uint64_t i) {
  uint64_t h = SplitMix{seed ^ (i * 0xd1342543de82ef95ull)}.next();
  const double sum = static_cast<double>(h & 0xffff) + static_cast<double>((h >> 16) & 0xffff) +
                     static_cast<double>((h >> 32) & 0xffff) + static_cast<double>(h >> 48);
  return static_cast<float>((sum / 65536.0 - 2.0) * 1.7320508075688772);
}
}  // namespace

void adam_steps(std::vector<float>& w, std::vector<float>& before_last, double lr, int steps,
                uint64_t seed) {
  std::vector<float> m(w.size(), 0.0f), v(w.size(), 0.0f);
  constexpr double b1 = 0.9, b2 = 0.999, eps = 1e-8;
  for (int t = 1; t <= steps; ++t) {
    if (t == steps) before_last = w;
    const double c1 = 1.0 - std::pow(b1, t), c2 = 1.0 - std::pow(b2, t);
    const uint64_t step_seed = seed * 0x100000001b3ull + static_cast<uint64_t>(t);
    split(w.size(), [&](unsigned, size_t begin, size_t end) {
      for (size_t i = begin; i < end; ++i) {
        const double g = hashed_normal(seed, i) + hashed_normal(step_seed, i);
        m[i] = static_cast<float>(b1 * m[i] + (1 - b1) * g);
        v[i] = static_cast<float>(b2 * v[i] + (1 - b2) * g * g);
        const double mhat = m[i] / c1, vhat = v[i] / c2;
        w[i] = static_cast<float>(w[i] - lr * mhat / (std::sqrt(vhat) + eps));
      }
    });
  }
}

void to_bf16(const std::vector<float>& w, std::vector<uint16_t>& out) {
  out.resize(w.size());
  split(w.size(), [&](unsigned, size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) {
      uint32_t x;
      std::memcpy(&x, &w[i], 4);
      uint32_t rounding = 0x7fff + ((x >> 16) & 1);
      out[i] = static_cast<uint16_t>((x + rounding) >> 16);
    }
  });
}

}  // namespace flare::bench
