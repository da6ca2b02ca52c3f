#include "emulator/model/layout.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace flare::model::detail {

void check_config(const Config& cfg) {
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument("model config '" + cfg.name + "': " + what);
  };
  if (cfg.vocab != kVocab) fail("vocab must be " + std::to_string(kVocab));
  if (cfg.d_model <= 0 || cfg.n_layers <= 0 || cfg.n_heads <= 0 || cfg.d_ff <= 0 ||
      cfg.max_seq <= 0)
    fail("sizes must be positive");
  if (cfg.n_heads > 64) fail("n_heads must be at most 64");
  if (cfg.d_model % cfg.n_heads != 0) fail("d_model must be divisible by n_heads");
  if ((cfg.d_model / cfg.n_heads) % 2 != 0) fail("head size must be even for rotary positions");
  if (!(cfg.norm_eps > 0) || !(cfg.rope_theta > 0)) fail("norm_eps and rope_theta must be > 0");
}

Layout make_layout(const Config& cfg, bool untied_head) {
  check_config(cfg);
  Layout lay;
  size_t at = 0;
  auto take = [&](size_t n) {
    size_t off = at;
    lay.tensor_offset.push_back(off);
    lay.tensor_size.push_back(n);
    at += n;
    return off;
  };
  const size_t d = cfg.d_model, f = cfg.d_ff;
  lay.embed = take(size_t(cfg.vocab) * d);
  for (int i = 0; i < cfg.n_layers; ++i) {
    LayerOffsets l{};
    l.ln1 = take(d);
    l.wq = take(d * d);
    l.wk = take(d * d);
    l.wv = take(d * d);
    l.wo = take(d * d);
    l.ln2 = take(d);
    l.gate = take(f * d);
    l.up = take(f * d);
    l.down = take(d * f);
    lay.layers.push_back(l);
  }
  lay.norm = take(d);
  lay.head = untied_head ? take(size_t(cfg.vocab) * d) : lay.embed;
  lay.total = at;
  return lay;
}

Layout make_layout(const Config& cfg, const Weights& w) {
  return make_layout(cfg, w.size() == parameter_specs(cfg).size() + 1);
}

static std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

void check_weights(const Config& cfg, const Weights& w) {
  std::vector<TensorSpec> specs = parameter_specs(cfg);
  if (w.size() == specs.size() + 1 && w.back().name == untied_head_spec(cfg).name)
    specs.push_back(untied_head_spec(cfg));
  check_tensors(specs, w);
}

void check_tensors(const std::vector<TensorSpec>& specs, const Weights& w) {
  for (size_t i = 0; i < specs.size(); ++i) {
    if (i >= w.size()) throw std::invalid_argument("weights: missing tensor " + specs[i].name);
    const Tensor& t = w[i];
    if (t.name != specs[i].name) {
      bool known = false;
      for (const TensorSpec& s : specs) known |= s.name == t.name;
      if (!known) throw std::invalid_argument("weights: unexpected tensor " + t.name);
      throw std::invalid_argument("weights: tensor " + t.name + " at position " +
                                  std::to_string(i) + " where " + specs[i].name +
                                  " was expected (canonical order)");
    }
    if (t.shape != specs[i].shape)
      throw std::invalid_argument("weights: tensor " + t.name + " has shape " + shape_str(t.shape) +
                                  ", expected " + shape_str(specs[i].shape));
    size_t n = 1;
    for (int64_t s : t.shape) n *= size_t(s);
    if (t.data.size() != n)
      throw std::invalid_argument("weights: tensor " + t.name + " holds " +
                                  std::to_string(t.data.size()) + " values, shape needs " +
                                  std::to_string(n));
  }
  if (w.size() > specs.size())
    throw std::invalid_argument("weights: unexpected tensor " + w[specs.size()].name);
}

std::vector<float> flatten(const Layout& lay, const Weights& w) {
  std::vector<float> flat(lay.total);
  for (size_t i = 0; i < w.size(); ++i)
    std::copy(w[i].data.begin(), w[i].data.end(), flat.begin() + lay.tensor_offset[i]);
  return flat;
}

RopeTables rope_tables(const Config& cfg) {
  const int half = cfg.d_model / cfg.n_heads / 2;
  RopeTables t;
  t.cos.resize(size_t(cfg.max_seq) * half);
  t.sin.resize(t.cos.size());
  for (int pos = 0; pos < cfg.max_seq; ++pos)
    for (int i = 0; i < half; ++i) {
      const double inv_freq = std::pow(double(cfg.rope_theta), -2.0 * i / (2.0 * half));
      const double angle = pos * inv_freq;
      t.cos[size_t(pos) * half + i] = std::cos(angle);
      t.sin[size_t(pos) * half + i] = std::sin(angle);
    }
  return t;
}

}  // namespace flare::model::detail
