// LoRA adapters: tensor specs, PEFT's initialisation, the flat layout shared by
// trainer and inference, merging into the base, and the serving Adapter.
#include <cmath>
#include <stdexcept>
#include <string>

#include "emulator/model/lora_net.hpp"
#include "emulator/model/model.hpp"
#include "emulator/model/splitmix.hpp"

namespace flare::model {

const char* const kLoraHeadName = "lm_head";
const char* const kLoraTargetNames[kLoraTargets] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                    "gate_proj", "up_proj", "down_proj"};

namespace {

void check_rank(int rank) {
  if (rank < 1 || rank > kMaxLoraRank)
    throw std::invalid_argument("lora rank " + std::to_string(rank) + " is outside [1, " +
                                std::to_string(kMaxLoraRank) + "]");
}

// (in, out) of target t.
std::pair<int, int> target_dims(const Config& cfg, int t) {
  if (t == detail::kGate || t == detail::kUp) return {cfg.d_model, cfg.d_ff};
  if (t == detail::kDown) return {cfg.d_ff, cfg.d_model};
  return {cfg.d_model, cfg.d_model};
}

std::string target_prefix(int layer, int t) {
  return "model.layers." + std::to_string(layer) + (t <= detail::kO ? ".self_attn." : ".mlp.") +
         kLoraTargetNames[t];
}

}  // namespace

TensorSpec untied_head_spec(const Config& cfg) {
  return {std::string(kLoraHeadName) + ".weight", {cfg.vocab, cfg.d_model}};
}

std::vector<TensorSpec> lora_specs(const Config& cfg, int rank, bool unembed) {
  detail::check_config(cfg);
  check_rank(rank);
  std::vector<TensorSpec> specs;
  auto pair = [&](const std::string& prefix, int in, int out) {
    specs.push_back({prefix + ".lora_A.weight", {rank, in}});
    specs.push_back({prefix + ".lora_B.weight", {out, rank}});
  };
  for (int i = 0; i < cfg.n_layers; ++i)
    for (int t = 0; t < kLoraTargets; ++t) {
      const auto [in, out] = target_dims(cfg, t);
      pair(target_prefix(i, t), in, out);
    }
  if (unembed) pair(kLoraHeadName, cfg.d_model, cfg.vocab);
  return specs;
}

bool lora_has_head(const Weights& lora) {
  return !lora.empty() && lora.back().name.starts_with(std::string(kLoraHeadName) + ".lora_");
}

Weights init_lora(const Config& cfg, const LoraConfig& lora) {
  detail::SplitMix64 rng{lora.seed};
  Weights w;
  for (TensorSpec& spec : lora_specs(cfg, lora.rank, lora.train_unembed)) {
    Tensor t{spec.name, spec.shape, {}};
    t.data.assign(size_t(spec.shape[0] * spec.shape[1]), 0.0f);
    if (spec.name.ends_with(".lora_A.weight")) {
      const double bound = 1.0 / std::sqrt(double(spec.shape[1]));
      for (float& x : t.data) x = round_to_bf16(float((2.0 * rng.uniform() - 1.0) * bound));
    }
    w.push_back(std::move(t));
  }
  return w;
}

float lora_scale(double alpha, int rank) {
  return float(alpha / double(rank));
}

namespace detail {

LoraLayout make_lora_layout(const Config& cfg, int rank, bool unembed) {
  check_config(cfg);
  check_rank(rank);
  LoraLayout lay;
  lay.rank = rank;
  size_t at = 0;
  auto take = [&](size_t n) {
    lay.tensor_offset.push_back(at);
    lay.tensor_size.push_back(n);
    at += n;
    return at - n;
  };
  for (int i = 0; i < cfg.n_layers; ++i) {
    std::vector<LoraModule> layer;
    for (int t = 0; t < kLoraTargets; ++t) {
      const auto [in, out] = target_dims(cfg, t);
      LoraModule m{};
      m.in = in;
      m.out = out;
      m.a = take(size_t(rank) * in);
      m.b = take(size_t(out) * rank);
      layer.push_back(m);
    }
    lay.layers.push_back(std::move(layer));
  }
  if (unembed) {
    lay.has_head = true;
    lay.head = {0, 0, cfg.d_model, cfg.vocab};
    lay.head.a = take(size_t(rank) * cfg.d_model);
    lay.head.b = take(size_t(cfg.vocab) * rank);
  }
  lay.total = at;
  return lay;
}

std::vector<float> flatten(const LoraLayout& lay, const Weights& w) {
  std::vector<float> flat(lay.total);
  for (size_t i = 0; i < w.size(); ++i)
    std::copy(w[i].data.begin(), w[i].data.end(), flat.begin() + lay.tensor_offset[i]);
  return flat;
}

}  // namespace detail

Weights merge_lora(const Config& cfg, const Weights& base, const Weights& lora, float scale) {
  detail::check_weights(cfg, base);
  if (lora.empty()) throw std::invalid_argument("merge_lora: the adapter has no tensors");
  const int rank = int(lora[0].shape.at(0));
  detail::check_tensors(lora_specs(cfg, rank, lora_has_head(lora)), lora);
  Weights out = base;
  // The head is tied to the embedding: a LoRA on lm_head changes the output side
  // alone, so the merged weights carry a head of their own.
  if (lora_has_head(lora) && out.size() == parameter_specs(cfg).size()) {
    const TensorSpec head = untied_head_spec(cfg);
    out.push_back({head.name, head.shape, out[0].data});
  }
  for (size_t k = 0; k + 1 < lora.size(); k += 2) {
    // ".lora_A.weight" -> ".weight" names the base tensor.
    const std::string& an = lora[k].name;
    const std::string target = an.substr(0, an.size() - 14) + ".weight";
    Tensor* w = nullptr;
    for (Tensor& t : out)
      if (t.name == target) w = &t;
    const std::vector<float>& A = lora[k].data;
    const std::vector<float>& B = lora[k + 1].data;
    const size_t in = size_t(lora[k].shape[1]), outd = size_t(lora[k + 1].shape[0]);
    for (size_t o = 0; o < outd; ++o)
      for (size_t i = 0; i < in; ++i) {
        double sum = 0;
        for (int r = 0; r < rank; ++r) sum += double(B[o * rank + r]) * double(A[r * in + i]);
        float& x = w->data[o * in + i];
        x = float(double(x) + double(scale) * sum);
      }
  }
  return out;
}

Adapter::Adapter(const Config& cfg, const Weights& lora, float scale)
    : impl_(std::make_unique<Impl>()) {
  if (lora.empty() || lora[0].shape.size() != 2)
    throw std::invalid_argument("adapter: no lora_A tensor to take the rank from");
  const int rank = int(lora[0].shape[0]);
  detail::check_tensors(lora_specs(cfg, rank, lora_has_head(lora)), lora);
  if (!std::isfinite(scale)) throw std::invalid_argument("adapter: scale is not finite");
  Impl& m = *impl_;
  m.cfg = cfg;
  m.lay = detail::make_lora_layout(cfg, rank, lora_has_head(lora));
  m.w = detail::flatten(m.lay, lora);
  m.wt.resize(m.w.size());
  detail::transposed_copy(m.lay, m.w.data(), m.wt.data());
  m.scale = scale;
}

Adapter::~Adapter() = default;

const Config& Adapter::config() const {
  return impl_->cfg;
}
int Adapter::rank() const {
  return impl_->lay.rank;
}
float Adapter::scale() const {
  return impl_->scale;
}

}  // namespace flare::model
