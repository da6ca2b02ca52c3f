// Inference: prefill and batched decode over per-sequence KV caches. Every row
// (a token of some sequence at some position) goes through the same kernels,
// so logits do not depend on how tokens were grouped into calls.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <unordered_set>

#include "emulator/model/kernels.hpp"
#include "emulator/model/layout.hpp"
#include "emulator/model/lora_net.hpp"
#include "emulator/model/model.hpp"

namespace flare::model {

using detail::LayerOffsets;
using detail::Layout;

struct Model::Cache {
  const void* owner = nullptr;  // the Model::Impl that created it
  int len = 0;
  int capacity = 0;                        // positions allocated per layer
  std::vector<std::vector<float>> k, v;    // per layer [capacity, d_model], rotary applied to k
  std::shared_ptr<const Adapter> adapter;  // null: the base alone
};

namespace {
struct Net {
  Config cfg;
  Layout lay;
  std::vector<float> w, wt;
  std::vector<float> rope_cos, rope_sin;
};
}  // namespace

struct Model::Impl : Net {};

Model::Model(const Config& cfg, const Weights& weights) : impl_(std::make_unique<Impl>()) {
  detail::check_weights(cfg, weights);
  impl_->cfg = cfg;
  impl_->lay = detail::make_layout(cfg, weights);
  impl_->w = detail::flatten(impl_->lay, weights);
  impl_->wt.resize(impl_->w.size());
  detail::transposed_copy(cfg, impl_->lay, impl_->w.data(), impl_->wt.data());
  const detail::RopeTables rope = detail::rope_tables(cfg);
  impl_->rope_cos.assign(rope.cos.begin(), rope.cos.end());
  impl_->rope_sin.assign(rope.sin.begin(), rope.sin.end());
}

Model::~Model() = default;

const Config& Model::config() const {
  return impl_->cfg;
}

static void delete_cache(Model::Cache* c) {
  delete c;
}

std::unique_ptr<Model::Cache, void (*)(Model::Cache*)> Model::new_cache(
    std::shared_ptr<const Adapter> adapter) const {
  if (adapter) {
    const Config &a = adapter->config(), &m = impl_->cfg;
    if (a.name != m.name || a.d_model != m.d_model || a.n_layers != m.n_layers || a.d_ff != m.d_ff)
      throw std::invalid_argument("new_cache: the adapter was made for model '" + a.name +
                                  "', this model is '" + m.name + "'");
  }
  auto* c = new Cache;
  c->adapter = std::move(adapter);
  c->owner = impl_.get();
  c->k.resize(impl_->cfg.n_layers);
  c->v.resize(impl_->cfg.n_layers);
  return {c, &delete_cache};
}

int Model::cache_length(const Cache& c) {
  return c.len;
}

std::unique_ptr<Model::Cache, void (*)(Model::Cache*)> Model::copy_cache(const Cache& c) const {
  if (c.owner != impl_.get())
    throw std::invalid_argument("copy_cache: the cache was created by another model");
  return {new Cache(c), &delete_cache};
}

namespace {

struct Row {
  Model::Cache* cache;
  int pos;
  int token;
};

void reserve(Model::Cache& c, int positions, int d) {
  if (positions <= c.capacity) return;
  int cap = std::max(16, c.capacity);
  while (cap < positions) cap *= 2;
  for (auto& k : c.k) k.resize(size_t(cap) * d);
  for (auto& v : c.v) v.resize(size_t(cap) * d);
  c.capacity = cap;
}

// Runs `rows` through the network. Rows of one cache must be consecutive
// positions in increasing order; keys/values of all rows are stored before
// any attention, so a row sees every earlier position of its own sequence.
// Writes logits for the rows whose index is >= first_logit_row.
void run_rows(const Net& m, std::vector<Row>& rows, int first_logit_row, float* logits) {
  const Config& c = m.cfg;
  const Layout& lay = m.lay;
  const int B = int(rows.size()), d = c.d_model, f = c.d_ff, H = c.n_heads, hd = d / H,
            half = hd / 2, V = c.vocab;
  const float eps = c.norm_eps, scale = 1.0f / std::sqrt(float(hd));
  const float* w = m.w.data();
  const float* wt = m.wt.data();

  std::vector<float> x(size_t(B) * d), h(size_t(B) * d), q(size_t(B) * d), k(size_t(B) * d),
      v(size_t(B) * d), ctx(size_t(B) * d), gate(size_t(B) * f), up(size_t(B) * f);
  int max_pos = 0;
  for (const Row& r : rows) max_pos = std::max(max_pos, r.pos);
  std::vector<float> probs(size_t(H) * (max_pos + 1));

  // Consecutive rows that share an adapter form a segment; the base products
  // run over every row, then each segment adds its adapter's low-rank term in
  // place (rows keep their order, so nothing is gathered).
  struct Segment {
    int lo, hi;
    const Adapter::Impl* a;
  };
  std::vector<Segment> segments;
  int max_rank = 0;
  for (int b = 0; b < B; ++b) {
    const Adapter* ad = rows[b].cache->adapter.get();
    if (!ad) continue;
    if (!segments.empty() && segments.back().hi == b && segments.back().a == &ad->impl())
      segments.back().hi += 1;
    else
      segments.push_back({b, b + 1, &ad->impl()});
    max_rank = std::max(max_rank, ad->rank());
  }
  std::vector<float> us(size_t(B) * max_rank);
  auto adapt = [&](int li, int target, const float* in, float* out) {
    for (const Segment& s : segments) {
      const detail::LoraModule& mod = s.a->lay.layers[li][target];
      detail::lora_forward(s.a->net(), mod, in + size_t(s.lo) * mod.in, s.hi - s.lo, us.data(),
                           out + size_t(s.lo) * mod.out);
    }
  };

  for (int b = 0; b < B; ++b)
    std::copy_n(w + lay.embed + size_t(rows[b].token) * d, d, x.data() + size_t(b) * d);

  for (int li = 0; li < c.n_layers; ++li) {
    const LayerOffsets& o = lay.layers[li];
    for (int b = 0; b < B; ++b)
      detail::rmsnorm_row(x.data() + size_t(b) * d, w + o.ln1, d, eps, h.data() + size_t(b) * d);
    detail::matmul(h.data(), B, d, wt + o.wq, d, q.data());
    detail::matmul(h.data(), B, d, wt + o.wk, d, k.data());
    detail::matmul(h.data(), B, d, wt + o.wv, d, v.data());
    adapt(li, detail::kQ, h.data(), q.data());
    adapt(li, detail::kK, h.data(), k.data());
    adapt(li, detail::kV, h.data(), v.data());
    for (int b = 0; b < B; ++b) {
      const Row& r = rows[b];
      const float* cs = m.rope_cos.data() + size_t(r.pos) * half;
      const float* sn = m.rope_sin.data() + size_t(r.pos) * half;
      detail::rope_row(q.data() + size_t(b) * d, H, hd, cs, sn);
      detail::rope_row(k.data() + size_t(b) * d, H, hd, cs, sn);
      std::copy_n(k.data() + size_t(b) * d, d, r.cache->k[li].data() + size_t(r.pos) * d);
      std::copy_n(v.data() + size_t(b) * d, d, r.cache->v[li].data() + size_t(r.pos) * d);
    }
    for (int b = 0; b < B; ++b) {
      const Row& r = rows[b];
      detail::attend_heads(q.data() + size_t(b) * d, r.cache->k[li].data(), r.cache->v[li].data(),
                           r.pos + 1, size_t(d), H, hd, scale, probs.data(), size_t(max_pos) + 1,
                           ctx.data() + size_t(b) * d);
    }
    detail::matmul(ctx.data(), B, d, wt + o.wo, d, x.data(), true);
    adapt(li, detail::kO, ctx.data(), x.data());
    for (int b = 0; b < B; ++b)
      detail::rmsnorm_row(x.data() + size_t(b) * d, w + o.ln2, d, eps, h.data() + size_t(b) * d);
    detail::matmul(h.data(), B, d, wt + o.gate, f, gate.data());
    detail::matmul(h.data(), B, d, wt + o.up, f, up.data());
    adapt(li, detail::kGate, h.data(), gate.data());
    adapt(li, detail::kUp, h.data(), up.data());
    for (size_t i = 0; i < size_t(B) * f; ++i) gate[i] = detail::silu(gate[i]) * up[i];
    detail::matmul(gate.data(), B, f, wt + o.down, d, x.data(), true);
    adapt(li, detail::kDown, gate.data(), x.data());
  }

  const int first = std::clamp(first_logit_row, 0, B);
  for (int b = first; b < B; ++b)
    detail::rmsnorm_row(x.data() + size_t(b) * d, w + lay.norm, d, eps, h.data() + size_t(b) * d);
  detail::matmul(h.data() + size_t(first) * d, B - first, d, wt + lay.head, V, logits);
  for (const Segment& s : segments) {  // lm_head adapters, over the rows that get logits
    const int lo = std::max(s.lo, first);
    if (lo >= s.hi || !s.a->lay.has_head) continue;
    detail::lora_forward(s.a->net(), s.a->lay.head, h.data() + size_t(lo) * d, s.hi - lo, us.data(),
                         logits + size_t(lo - first) * V);
  }
}

void check_token(int token, const char* where, size_t index) {
  if (token < 0 || token >= kVocab)
    throw std::invalid_argument(std::string(where) + ": token " + std::to_string(token) +
                                " at index " + std::to_string(index) +
                                " is outside the vocabulary [0, " + std::to_string(kVocab) + ")");
}

}  // namespace

void Model::prefill(Cache& cache, std::span<const int> tokens, float* logits_all,
                    float* logits_last) const {
  const Config& c = impl_->cfg;
  if (tokens.empty()) {
    if (logits_all || logits_last)
      throw std::invalid_argument("prefill: no tokens to compute logits for");
    return;
  }
  if (cache.owner != impl_.get())
    throw std::invalid_argument("prefill: the cache was created by another model");
  for (size_t i = 0; i < tokens.size(); ++i) check_token(tokens[i], "prefill", i);
  const size_t end = size_t(cache.len) + tokens.size();
  if (end > size_t(c.max_seq))
    throw std::invalid_argument("prefill: sequence of " + std::to_string(end) +
                                " tokens exceeds max_seq " + std::to_string(c.max_seq));
  reserve(cache, int(end), c.d_model);
  std::vector<Row> rows;
  rows.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i)
    rows.push_back({&cache, cache.len + int(i), tokens[i]});
  const int n = int(tokens.size());
  std::vector<float> scratch;
  float* out = logits_all;
  int first = 0;  // first row whose logits are computed
  if (!logits_all) {
    scratch.resize(c.vocab);
    out = scratch.data();
    first = logits_last ? n - 1 : n;
  }
  run_rows(*impl_, rows, first, out);
  cache.len = int(end);
  if (logits_last) std::copy_n(out + size_t(n - 1 - first) * c.vocab, c.vocab, logits_last);
}

void Model::decode(std::span<Cache* const> caches, std::span<const int> tokens,
                   float* logits) const {
  const Config& c = impl_->cfg;
  if (caches.size() != tokens.size())
    throw std::invalid_argument("decode: " + std::to_string(caches.size()) + " caches but " +
                                std::to_string(tokens.size()) + " tokens");
  if (caches.empty()) return;
  if (!logits) throw std::invalid_argument("decode: logits buffer is null");
  std::unordered_set<const Cache*> seen;
  for (size_t b = 0; b < caches.size(); ++b) {
    if (!caches[b]) throw std::invalid_argument("decode: cache " + std::to_string(b) + " is null");
    if (caches[b]->owner != impl_.get())
      throw std::invalid_argument("decode: cache " + std::to_string(b) +
                                  " was created by another model");
    if (!seen.insert(caches[b]).second)
      throw std::invalid_argument("decode: cache " + std::to_string(b) +
                                  " appears more than once in the batch");
    check_token(tokens[b], "decode", b);
    if (caches[b]->len + 1 > c.max_seq)
      throw std::invalid_argument("decode: sequence " + std::to_string(b) + " is full (max_seq " +
                                  std::to_string(c.max_seq) + ")");
  }
  std::vector<Row> rows;
  rows.reserve(caches.size());
  for (size_t b = 0; b < caches.size(); ++b) {
    reserve(*caches[b], caches[b]->len + 1, c.d_model);
    rows.push_back({caches[b], caches[b]->len, tokens[b]});
  }
  run_rows(*impl_, rows, 0, logits);
  for (Cache* cache : caches) cache->len += 1;
}

}  // namespace flare::model
