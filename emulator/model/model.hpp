#pragma once
// The tiny byte-level transformer shared by the emulator's inference engine and
// its trainer, so that both compute exactly the same function.
//
// Architecture: decoder-only; vocabulary = 256 bytes + BOS + EOS; RMSNorm
// (pre-norm); rotary positions; multi-head causal attention; SiLU-gated MLP;
// tied input/output embeddings (or an untied lm_head.weight at the end, see
// untied_head_spec). Tensor names follow the usual conventions:
//   model.embed_tokens.weight                      [vocab, d_model]
//   model.layers.N.input_layernorm.weight          [d_model]
//   model.layers.N.self_attn.{q,k,v,o}_proj.weight [d_model, d_model]
//   model.layers.N.post_attention_layernorm.weight [d_model]
//   model.layers.N.mlp.{gate,up}_proj.weight       [d_ff, d_model]
//   model.layers.N.mlp.down_proj.weight            [d_model, d_ff]
//   model.norm.weight                              [d_model]
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace flare::model {

constexpr int kVocab = 258;
constexpr int kBos = 256;
constexpr int kEos = 257;

struct Config {
  std::string name;  // short name, e.g. "tiny-gpt"
  int vocab = kVocab;
  int d_model = 128;
  int n_layers = 4;
  int n_heads = 4;
  int d_ff = 384;
  int max_seq = 512;
  float rope_theta = 10000.0f;
  float norm_eps = 1e-5f;
  uint64_t seed = 1;
};

// Built-in base models by short name ("tiny-gpt", "tiny-gpt-m"); nullptr when unknown.
const Config* builtin(std::string_view short_name);
std::vector<std::string> builtin_names();

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;  // row-major
};
using Weights = std::vector<Tensor>;  // in canonical order (the order of parameter_specs)

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
};
std::vector<TensorSpec> parameter_specs(const Config&);
// lm_head.weight [vocab, d_model]: an output head of its own. The built-in models
// tie the head to the embedding; weights may end with this tensor instead (a LoRA
// adapter on lm_head merged into them), and the model then uses it for the logits.
TensorSpec untied_head_spec(const Config&);

// Deterministic initial weights from cfg.seed, every value exactly representable in bf16.
Weights init_weights(const Config&);
// Round every value to the nearest bf16 (round-to-nearest-even; NaN stays NaN).
void round_to_bf16(Weights&);
float round_to_bf16(float);

// Byte-level tokenizer: text bytes are token ids 0..255; BOS/EOS decode to "".
std::vector<int> encode_text(std::string_view text);
std::string decode_tokens(std::span<const int> tokens);

// ---- LoRA ------------------------------------------------------------------
// Low-rank adapters on every projection, named as PEFT's target_modules: the
// projection y = x Wᵀ becomes y = x Wᵀ + scale · (x Aᵀ) Bᵀ with A [rank, in],
// B [out, rank] and scale = alpha / rank. Optionally also on the output head
// (lm_head, the SDK's train_unembed): logits = h Eᵀ + scale · (h Aᵀ) Bᵀ, the
// input embedding E unchanged.

inline constexpr int kLoraTargets = 7;
// q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj
extern const char* const kLoraTargetNames[kLoraTargets];
extern const char* const kLoraHeadName;  // "lm_head"
inline constexpr int kMaxLoraRank = 64;

struct LoraConfig {
  int rank = 0;               // 0 = full-weight training
  double alpha = 0;           // scale = alpha / rank
  uint64_t seed = 0;          // initialisation of A
  bool train_unembed = true;  // an adapter on lm_head too (the SDK's name and default)
};

// Adapter tensors in canonical order, per layer and target A then B, then lm_head's:
//   model.layers.N.self_attn.q_proj.lora_A.weight [rank, in]
//   model.layers.N.self_attn.q_proj.lora_B.weight [out, rank]   (mlp.gate_proj, ... alike)
//   lm_head.lora_A.weight [rank, d_model], lm_head.lora_B.weight [vocab, rank]  (unembed)
// Throws std::invalid_argument unless 1 <= rank <= kMaxLoraRank.
std::vector<TensorSpec> lora_specs(const Config& cfg, int rank, bool unembed);
// Whether adapter tensors (lora_specs order) include lm_head's.
bool lora_has_head(const Weights& lora);
// A as PEFT initialises it (kaiming-uniform with a = sqrt(5), i.e. uniform in
// ±1/sqrt(in)) from lora.seed, rounded to bf16; B zero, so base + adapter
// computes exactly the base until B moves.
Weights init_lora(const Config& cfg, const LoraConfig& lora);
// The scale as every forward uses it (float(alpha / rank)).
float lora_scale(double alpha, int rank);
// W + scale · B A for each target projection of `base` (canonical order), computed
// in double; the result holds exact sums, round_to_bf16 it for a checkpoint. With
// an lm_head adapter the result ends with lm_head.weight = E + scale · B A (an
// untied head; the embedding stays E).
Weights merge_lora(const Config& cfg, const Weights& base, const Weights& lora, float scale);

// An adapter ready to serve: A, B and their transposes. Immutable and shared by
// the sequences that use it.
class Adapter {
 public:
  // `lora` in lora_specs() order (rank taken from the first A, lm_head's pair
  // when the last tensors are lm_head's); throws
  // std::invalid_argument naming the tensor on a missing/extra tensor or wrong shape.
  Adapter(const Config& cfg, const Weights& lora, float scale);
  ~Adapter();
  Adapter(const Adapter&) = delete;
  Adapter& operator=(const Adapter&) = delete;
  const Config& config() const;
  int rank() const;
  float scale() const;
  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// ---- inference -------------------------------------------------------------

// Immutable after construction; every const method may be called from many
// threads at once (each with its own Cache).
class Model {
 public:
  // Throws std::invalid_argument naming the tensor on a missing/extra tensor or wrong shape.
  Model(const Config& cfg, const Weights& weights);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const Config& config() const;

  struct Cache;  // the KV cache of one sequence
  // A cache whose sequence runs through `adapter` (nullptr = the base alone).
  // Sequences with different adapters batch together in decode(): the base
  // products run over every row at once, each adapter's term over its rows.
  // Throws std::invalid_argument for an adapter of another model config.
  std::unique_ptr<Cache, void (*)(Cache*)> new_cache(
      std::shared_ptr<const Adapter> adapter = nullptr) const;
  static int cache_length(const Cache&);
  // A copy of `cache` (same sequence so far), e.g. to sample several choices
  // after one prompt prefill. Throws std::invalid_argument for another model's cache.
  std::unique_ptr<Cache, void (*)(Cache*)> copy_cache(const Cache& cache) const;

  // Appends `tokens` to the sequence. Writes logits for every new position
  // (tokens.size() x vocab) into logits_all when not null, and the logits of the
  // last position (vocab) into logits_last when not null.
  void prefill(Cache& cache, std::span<const int> tokens, float* logits_all,
               float* logits_last) const;

  // One decode step for B sequences at once (batched matrix products):
  // appends tokens[b] to *caches[b] and writes B x vocab logits.
  void decode(std::span<Cache* const> caches, std::span<const int> tokens, float* logits) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---- training --------------------------------------------------------------

// Tinker-shaped datum: input tokens and per-position targets (target_tokens[t]
// is the token that follows input position t). Optional vectors are either
// empty or the same length as tokens.
struct Datum {
  std::vector<int> tokens;
  std::vector<int> target_tokens;
  // cross_entropy: token weights (default 1). Policy losses: a 0 weight leaves the
  // position out (prompt tokens), any other value counts it as a loss token.
  std::vector<float> weights;
  std::vector<float> sampler_logprobs;  // the policy losses' behaviour policy (logprobs)
  std::vector<float> advantages;        // the policy losses' advantages
  std::vector<float> ref_logprobs;      // a reference model's logprobs: KL penalty and dpo
};

// The built-in losses; their definitions are in losses.hpp. Wire names (Tinker's where
// Tinker has the loss): cross_entropy, importance_sampling, ppo, cispo, grpo, dr_grpo, gspo,
// reinforce, dpo.
enum class LossFn {
  CrossEntropy,
  ImportanceSampling,
  Ppo,
  Grpo,
  DrGrpo,
  Gspo,
  Cispo,
  Reinforce,
  Dpo,
};
// The wire name of `fn`, and the LossFn of a wire name (false when unknown).
const char* loss_name(LossFn fn);
bool parse_loss_name(std::string_view name, LossFn& out);
// Every wire name, comma-separated, for error messages.
std::string loss_names();

// How the summed per-token (or, for gspo and dpo, per-sequence/per-pair) loss is scaled.
enum class Normalization {
  Default,   // the loss's own: sequence for grpo, sum for the others
  Sum,       // Σ (Tinker's losses are sums)
  Token,     // Σ / (loss tokens of the batch)
  Sequence,  // mean over sequences of (Σ over the sequence / its loss tokens)
  Constant,  // Σ / normalization_tokens (Dr. GRPO: a fixed token budget)
};

// Schulman's estimators of KL(policy || reference) from δ = logp - ref_logp on a token
// sampled from the policy: k1 = δ, k2 = δ²/2, k3 = exp(-δ) - 1 + δ.
enum class KlEstimator { K1, K2, K3 };

struct LossConfig {
  float clip_low = 0.2f;  // ratio clipped to [1 - clip_low, 1 + clip_high] (DAPO: low != high)
  float clip_high = 0.2f;
  Normalization normalization = Normalization::Default;
  double normalization_tokens = 0;  // Normalization::Constant's divisor (> 0)
  double tis_cap = 0;               // truncated importance sampling: cap C > 0, 0 = off
  double kl_beta = 0;               // weight of the KL penalty against ref_logprobs
  KlEstimator kl_estimator = KlEstimator::K3;
  double dpo_beta = 0.1;  // dpo's β
};

// Throws std::invalid_argument naming the field ("loss_fn_config.tis_cap: ...") when a value
// is out of range or does not apply to the loss.
void check_loss_config(LossFn loss, const LossConfig& lc);

struct ForwardBackwardResult {
  std::vector<std::vector<float>>
      logprobs;  // per datum, per position: trainer logprob of the target
  double loss = 0;
  double mean_ratio = 1;        // mean exp(trainer - sampler) over advantage-bearing tokens
  double clip_fraction = 0;     // fraction of those tokens (gspo: sequences) clipped
  double logprob_mismatch = 0;  // mean k3 estimate of KL(trainer || sampler) on those tokens
  double kl = 0;                // mean KL estimate against ref_logprobs (the configured estimator)
  long kl_tokens = 0;           // loss tokens that carried ref_logprobs
  double tis_fraction = 0;      // fraction of tokens whose IS weight hit tis_cap
  double preference_accuracy = 0;  // dpo: fraction of pairs whose implicit reward margin > 0
  double reward_margin = 0;        // dpo: mean β·(Δchosen - Δrejected)
  long tokens = 0;
};

struct AdamParams {  // Tinker's defaults
  double learning_rate = 1e-4;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-12;
  double weight_decay = 0.0;
  double grad_clip_norm = 0.0;  // 0 = off
};

struct OptimResult {
  double grad_norm = 0;  // before clipping
  long step = 0;         // optimizer steps taken so far
};

// fp32 master weights; forward and backward run on a bf16-rounded copy (what a
// sampler snapshot holds), so trainer logprobs match the deployment's. With
// LoRA (lora.rank > 0) the base weights are frozen and only the adapter's A and
// B train (gradients, Adam moments and state cover them alone).
// Not thread-safe: call one method at a time (each call runs on up to `threads`
// threads of the process's shared pool; on the caller alone while another call
// holds the pool). Bad datums throw std::invalid_argument naming "data[i].field"
// and leave the gradient accumulator untouched. Metrics (mean_ratio, logprob_mismatch,
// clip_fraction) cover the tokens that have sampler_logprobs and, when
// advantages are given, a nonzero advantage (prompt tokens carry 0); kl covers
// the loss tokens that have ref_logprobs. dpo takes the data as pairs: data[2k]
// the chosen sequence, data[2k + 1] the rejected one.
class Trainer {
 public:
  // threads 0 = hardware threads. Throws std::invalid_argument for a LoRA rank
  // outside [0, kMaxLoraRank] or alpha <= 0.
  Trainer(const Config& cfg, Weights master, int threads = 0, const LoraConfig& lora = {});
  ~Trainer();

  const Config& config() const;
  // Computes the loss, returns per-token logprobs and metrics, and adds the
  // gradient into the accumulator (until optim_step).
  ForwardBackwardResult forward_backward(const std::vector<Datum>& data, LossFn loss,
                                         const LossConfig& cfg);
  // Logprobs and metrics only; no gradient.
  ForwardBackwardResult forward(const std::vector<Datum>& data, LossFn loss, const LossConfig& cfg);
  // AdamW on the accumulated gradient, then clears it.
  OptimResult optim_step(const AdamParams& p);
  long step() const;

  const LoraConfig& lora() const;
  const Weights& master() const;    // with LoRA: the frozen base
  Weights sampler_weights() const;  // bf16-rounded copy of the master weights (base only)
  Weights adapter_weights() const;  // bf16-rounded A and B (lora_specs order); empty without LoRA
  Weights merged_weights() const;   // bf16(base + scale · B A): the adapter folded in (with an
                                    // lm_head adapter, an untied lm_head.weight at the end)

  // Everything needed to continue bit-identically: trained weights (the adapter
  // under LoRA), Adam moments, pending gradient, step.
  std::string save_state() const;
  void load_state(std::string_view bytes);  // throws std::invalid_argument on bad bytes

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace flare::model
