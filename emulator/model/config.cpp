// Built-in configurations, parameter specs, deterministic initialisation,
// bf16 rounding and the byte tokenizer.
#include <bit>
#include <cmath>
#include <numbers>
#include <stdexcept>

#include "emulator/model/layout.hpp"
#include "emulator/model/model.hpp"
#include "emulator/model/splitmix.hpp"

namespace flare::model {

namespace {

Config make_config(std::string name, int d_model, int n_layers, int n_heads, int d_ff, int max_seq,
                   uint64_t seed) {
  Config c;
  c.name = std::move(name);
  c.d_model = d_model;
  c.n_layers = n_layers;
  c.n_heads = n_heads;
  c.d_ff = d_ff;
  c.max_seq = max_seq;
  c.seed = seed;
  return c;
}

const std::vector<Config>& builtins() {
  static const std::vector<Config> all = {
      make_config("tiny-gpt", 64, 2, 4, 192, 256, 1),
      make_config("tiny-gpt-m", 128, 4, 4, 384, 512, 2),
  };
  return all;
}

}  // namespace

const Config* builtin(std::string_view short_name) {
  for (const Config& c : builtins())
    if (c.name == short_name) return &c;
  return nullptr;
}

std::vector<std::string> builtin_names() {
  std::vector<std::string> names;
  for (const Config& c : builtins()) names.push_back(c.name);
  return names;
}

std::vector<TensorSpec> parameter_specs(const Config& cfg) {
  detail::check_config(cfg);
  const int64_t d = cfg.d_model, f = cfg.d_ff;
  std::vector<TensorSpec> specs;
  specs.push_back({"model.embed_tokens.weight", {cfg.vocab, d}});
  for (int i = 0; i < cfg.n_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    specs.push_back({p + "input_layernorm.weight", {d}});
    for (const char* m : {"q", "k", "v", "o"})
      specs.push_back({p + "self_attn." + m + "_proj.weight", {d, d}});
    specs.push_back({p + "post_attention_layernorm.weight", {d}});
    specs.push_back({p + "mlp.gate_proj.weight", {f, d}});
    specs.push_back({p + "mlp.up_proj.weight", {f, d}});
    specs.push_back({p + "mlp.down_proj.weight", {d, f}});
  }
  specs.push_back({"model.norm.weight", {d}});
  return specs;
}

Weights init_weights(const Config& cfg) {
  detail::SplitMix64 rng{cfg.seed};
  constexpr double kSigma = 0.02;
  Weights w;
  for (TensorSpec& spec : parameter_specs(cfg)) {
    Tensor t{spec.name, spec.shape, {}};
    size_t n = 1;
    for (int64_t s : spec.shape) n *= size_t(s);
    t.data.resize(n);
    if (spec.shape.size() == 1) {
      std::fill(t.data.begin(), t.data.end(), 1.0f);
    } else {
      for (size_t i = 0; i < n; i += 2) {  // Box-Muller: two normals per pair of uniforms
        const double r = std::sqrt(-2.0 * std::log(rng.uniform()));
        const double a = 2.0 * std::numbers::pi * rng.uniform();
        t.data[i] = float(kSigma * r * std::cos(a));
        if (i + 1 < n) t.data[i + 1] = float(kSigma * r * std::sin(a));
      }
    }
    w.push_back(std::move(t));
  }
  round_to_bf16(w);
  return w;
}

float round_to_bf16(float x) {
  uint32_t bits = std::bit_cast<uint32_t>(x);
  if (std::isnan(x)) return std::bit_cast<float>(bits | 0x00400000u);  // stays a (quiet) NaN
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  return std::bit_cast<float>(bits & 0xFFFF0000u);
}

void round_to_bf16(Weights& w) {
  for (Tensor& t : w)
    for (float& x : t.data) x = round_to_bf16(x);
}

std::vector<int> encode_text(std::string_view text) {
  std::vector<int> out;
  out.reserve(text.size());
  for (char c : text) out.push_back(int(static_cast<unsigned char>(c)));
  return out;
}

std::string decode_tokens(std::span<const int> tokens) {
  std::string out;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const int t = tokens[i];
    if (t < 0 || t >= kVocab)
      throw std::invalid_argument("decode_tokens: token " + std::to_string(t) + " at index " +
                                  std::to_string(i) + " is outside the vocabulary");
    if (t < 256) out.push_back(static_cast<char>(t));
  }
  return out;
}

}  // namespace flare::model
