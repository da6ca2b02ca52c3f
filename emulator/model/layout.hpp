#pragma once
// Flat parameter layout shared by inference and training: every tensor of
// parameter_specs() lives at a fixed offset of one contiguous buffer, in
// canonical order. A second buffer of the same layout holds the transposes of
// the matrices ([in, out] instead of [out, in]) so that products x·Wᵀ run as
// contiguous row updates the compiler vectorises.
#include <cstddef>
#include <vector>

#include "emulator/model/model.hpp"

namespace flare::model::detail {

struct LayerOffsets {
  size_t ln1, wq, wk, wv, wo, ln2, gate, up, down;
};

struct Layout {
  size_t embed = 0;
  std::vector<LayerOffsets> layers;
  size_t norm = 0;
  size_t head = 0;  // the output head [vocab, d_model]: `embed` when tied, else lm_head.weight
  size_t total = 0;
  std::vector<size_t> tensor_offset;  // per tensor of parameter_specs()
  std::vector<size_t> tensor_size;
};

// LoRA: per layer, one (A, B) pair for each projection in kLoraTargets order,
// then optionally the output head's (lm_head: in d_model, out vocab); A [rank, in]
// at `a`, B [out, rank] at `b` of one flat buffer. The buffer of transposes keeps
// Aᵀ [in, rank] at `a` and Bᵀ [rank, out] at `b`.
struct LoraModule {
  size_t a, b;
  int in, out;
};
struct LoraLayout {
  int rank = 0;
  std::vector<std::vector<LoraModule>> layers;  // [layer][target]
  bool has_head = false;
  LoraModule head{};
  size_t total = 0;
  std::vector<size_t> tensor_offset;  // per tensor of lora_specs(): A, B, A, B, ...
  std::vector<size_t> tensor_size;
};
LoraLayout make_lora_layout(const Config& cfg, int rank, bool unembed);
std::vector<float> flatten(const LoraLayout& lay, const Weights& w);

// Throws std::invalid_argument on an unusable configuration (e.g. d_model not
// divisible by n_heads, odd head size, non-positive sizes).
void check_config(const Config& cfg);
// `untied_head`: the weights end with lm_head.weight (see untied_head_spec).
Layout make_layout(const Config& cfg, bool untied_head = false);

// Throws std::invalid_argument naming the tensor on a missing/extra tensor or wrong shape.
// parameter_specs(cfg), optionally followed by lm_head.weight.
void check_weights(const Config& cfg, const Weights& w);
// The layout of weights that passed check_weights.
Layout make_layout(const Config& cfg, const Weights& w);
// The same against any list of specs (e.g. lora_specs()).
void check_tensors(const std::vector<TensorSpec>& specs, const Weights& w);
std::vector<float> flatten(const Layout& lay, const Weights& w);

// Rotary tables: cos and sin of pos * theta^(-2i/head_dim), [max_seq, head_dim/2].
struct RopeTables {
  std::vector<double> cos, sin;
};
RopeTables rope_tables(const Config& cfg);

template <class T>
void transpose(const T* src, size_t rows, size_t cols, T* dst) {
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
}

// Same layout as `w`; matrices transposed, vectors copied.
template <class T>
void transposed_copy(const Config& cfg, const Layout& lay, const T* w, T* wt) {
  const size_t d = cfg.d_model, f = cfg.d_ff, v = cfg.vocab;
  transpose(w + lay.embed, v, d, wt + lay.embed);
  for (const LayerOffsets& l : lay.layers) {
    for (size_t i = 0; i < d; ++i) wt[l.ln1 + i] = w[l.ln1 + i];
    for (size_t i = 0; i < d; ++i) wt[l.ln2 + i] = w[l.ln2 + i];
    for (size_t off : {l.wq, l.wk, l.wv, l.wo}) transpose(w + off, d, d, wt + off);
    transpose(w + l.gate, f, d, wt + l.gate);
    transpose(w + l.up, f, d, wt + l.up);
    transpose(w + l.down, d, f, wt + l.down);
  }
  for (size_t i = 0; i < d; ++i) wt[lay.norm + i] = w[lay.norm + i];
  if (lay.head != lay.embed) transpose(w + lay.head, v, d, wt + lay.head);
}

// Aᵀ and Bᵀ of every LoRA pair, at the same offsets.
template <class T>
void transposed_copy(const LoraLayout& lay, const T* w, T* wt) {
  const size_t r = size_t(lay.rank);
  auto one = [&](const LoraModule& m) {
    transpose(w + m.a, r, size_t(m.in), wt + m.a);
    transpose(w + m.b, size_t(m.out), r, wt + m.b);
  };
  for (const auto& layer : lay.layers)
    for (const LoraModule& m : layer) one(m);
  if (lay.has_head) one(lay.head);
}

}  // namespace flare::model::detail
