#pragma once
// Training forward and hand-written backward of the transformer over one
// sequence, templated on the scalar type (float for training, double for the
// gradient check). The forward keeps every activation the backward needs.
#include <cmath>
#include <span>
#include <vector>

#include "emulator/model/attention.hpp"
#include "emulator/model/kernels.hpp"
#include "emulator/model/layout.hpp"
#include "emulator/model/lora_net.hpp"

namespace flare::model::detail {

// Read-only view of one set of parameters: `w` in canonical layout, `wt` the
// same with matrices transposed (see layout.hpp), rotary tables [max_seq, hd/2],
// and an optional adapter.
template <class T>
struct NetView {
  const Config* cfg;
  const Layout* lay;
  const T* w;
  const T* wt;
  const T* rope_cos;
  const T* rope_sin;
  const LoraNet<T>* lora = nullptr;
};

template <class T>
struct LayerActs {
  std::vector<T> x_in, inv1, h1, q, k, v, probs, ctx, x_mid, inv2, h2, gate, up, act, sig;
  std::vector<T> lora_us;  // per target [n, rank]: scale · x Aᵀ
  T* us(int target, int n, int rank) { return lora_us.data() + size_t(target) * n * rank; }
};

// Activations and scratch of one sequence; reused across calls to avoid
// reallocating.
template <class T>
struct SeqWork {
  int n = 0;
  std::vector<LayerActs<T>> layers;
  std::vector<T> x_out, inv_f, h_f, logp;  // logp: [n, vocab] log-softmax
  std::vector<T> head_us;                  // lm_head adapter: [n, rank] scale · h_f Aᵀ
  // backward scratch
  std::vector<T> dx, dh, dq, dk, dv, dctx, dgate, dup, dact, dlogits, tscratch, dus, ltmp;
  AttentionWork<T> att;

  void resize(const Config& c, int len, int lora_rank = 0) {
    n = len;
    const size_t d = c.d_model, f = c.d_ff, N = len, H = c.n_heads;
    layers.resize(c.n_layers);
    for (LayerActs<T>& l : layers) {
      for (auto* v : {&l.x_in, &l.h1, &l.q, &l.k, &l.v, &l.ctx, &l.x_mid, &l.h2}) v->resize(N * d);
      for (auto* v : {&l.gate, &l.up, &l.act, &l.sig}) v->resize(N * f);
      l.inv1.resize(N);
      l.inv2.resize(N);
      l.probs.resize(H * N * N);
      l.lora_us.resize(size_t(lora_rank) * N * 7);
    }
    dus.resize(size_t(lora_rank) * N);
    head_us.resize(size_t(lora_rank) * N);
    x_out.resize(N * d);
    h_f.resize(N * d);
    inv_f.resize(N);
    logp.resize(N * c.vocab);
    for (auto* v : {&dx, &dh, &dq, &dk, &dv, &dctx}) v->resize(N * d);
    for (auto* v : {&dgate, &dup, &dact}) v->resize(N * f);
    dlogits.resize(N * c.vocab);
  }
};

// Computes ws.logp for every position and writes the log-probability of each
// target into target_logp[t]. Tokens must already be validated.
template <class T>
void sequence_forward(const NetView<T>& net, std::span<const int> tokens,
                      std::span<const int> targets, SeqWork<T>& ws, T* target_logp) {
  const Config& c = *net.cfg;
  const Layout& lay = *net.lay;
  const int n = int(tokens.size()), d = c.d_model, f = c.d_ff, H = c.n_heads, hd = d / H,
            V = c.vocab, half = hd / 2;
  const T eps = T(c.norm_eps), scale = T(1) / std::sqrt(T(hd));
  const LoraNet<T>* lora = net.lora;
  const int r = lora ? lora->lay->rank : 0;
  ws.resize(c, n, r);
  const T* w = net.w;
  const T* wt = net.wt;

  std::vector<T>* x = &ws.layers[0].x_in;
  for (int t = 0; t < n; ++t)
    std::copy_n(w + lay.embed + size_t(tokens[t]) * d, d, x->data() + size_t(t) * d);

  for (int li = 0; li < c.n_layers; ++li) {
    const LayerOffsets& o = lay.layers[li];
    LayerActs<T>& a = ws.layers[li];
    for (int t = 0; t < n; ++t)
      a.inv1[t] = rmsnorm_row(a.x_in.data() + size_t(t) * d, w + o.ln1, d, eps,
                              a.h1.data() + size_t(t) * d);
    matmul(a.h1.data(), n, d, wt + o.wq, d, a.q.data());
    matmul(a.h1.data(), n, d, wt + o.wk, d, a.k.data());
    matmul(a.h1.data(), n, d, wt + o.wv, d, a.v.data());
    // Adds target t's low-rank term for input x into y, keeping scale · x Aᵀ.
    auto adapt = [&](int t, const T* x, T* y) {
      lora_forward(*lora, lora->lay->layers[li][t], x, n, a.us(t, n, r), y);
    };
    if (lora) {
      adapt(kQ, a.h1.data(), a.q.data());
      adapt(kK, a.h1.data(), a.k.data());
      adapt(kV, a.h1.data(), a.v.data());
    }
    for (int t = 0; t < n; ++t) {
      const T* cs = net.rope_cos + size_t(t) * half;
      const T* sn = net.rope_sin + size_t(t) * half;
      rope_row(a.q.data() + size_t(t) * d, H, hd, cs, sn);
      rope_row(a.k.data() + size_t(t) * d, H, hd, cs, sn);
    }
    attention_forward(a.q.data(), a.k.data(), a.v.data(), n, H, hd, scale, a.probs.data(),
                      a.ctx.data(), ws.att);
    a.x_mid = a.x_in;
    matmul(a.ctx.data(), n, d, wt + o.wo, d, a.x_mid.data(), true);
    if (lora) adapt(kO, a.ctx.data(), a.x_mid.data());
    for (int t = 0; t < n; ++t)
      a.inv2[t] = rmsnorm_row(a.x_mid.data() + size_t(t) * d, w + o.ln2, d, eps,
                              a.h2.data() + size_t(t) * d);
    matmul(a.h2.data(), n, d, wt + o.gate, f, a.gate.data());
    matmul(a.h2.data(), n, d, wt + o.up, f, a.up.data());
    if (lora) {
      adapt(kGate, a.h2.data(), a.gate.data());
      adapt(kUp, a.h2.data(), a.up.data());
    }
    for (size_t i = 0; i < size_t(n) * f; ++i) a.act[i] = silu(a.gate[i], &a.sig[i]) * a.up[i];
    std::vector<T>& next = li + 1 < c.n_layers ? ws.layers[li + 1].x_in : ws.x_out;
    next = a.x_mid;
    matmul(a.act.data(), n, f, wt + o.down, d, next.data(), true);
    if (lora) adapt(kDown, a.act.data(), next.data());
  }

  for (int t = 0; t < n; ++t)
    ws.inv_f[t] = rmsnorm_row(ws.x_out.data() + size_t(t) * d, w + lay.norm, d, eps,
                              ws.h_f.data() + size_t(t) * d);
  matmul(ws.h_f.data(), n, d, wt + lay.head, V, ws.logp.data());
  if (lora && lora->lay->has_head)
    lora_forward(*lora, lora->lay->head, ws.h_f.data(), n, ws.head_us.data(), ws.logp.data());
  for (int t = 0; t < n; ++t) {
    T* row = ws.logp.data() + size_t(t) * V;
    log_softmax_row(row, V, row);
    target_logp[t] = row[targets[t]];
  }
}

// Adds ∂L/∂w into `grad` (canonical layout) and, with an adapter, ∂L/∂(A, B)
// into `lora_grad` (LoraLayout), given dlogp[t] = ∂L/∂target_logp[t] and the
// activations of the preceding sequence_forward on the same inputs. A null
// `grad` skips the base weights' gradients (frozen under LoRA).
template <class T>
void sequence_backward(const NetView<T>& net, std::span<const int> tokens,
                       std::span<const int> targets, SeqWork<T>& ws, const T* dlogp, T* grad,
                       T* lora_grad = nullptr) {
  const Config& c = *net.cfg;
  const Layout& lay = *net.lay;
  const int n = int(tokens.size()), d = c.d_model, f = c.d_ff, H = c.n_heads, hd = d / H,
            V = c.vocab, half = hd / 2;
  const T scale = T(1) / std::sqrt(T(hd));
  const T* w = net.w;
  const size_t N = n;
  const LoraNet<T>* lora = net.lora;
  const int r = lora ? lora->lay->rank : 0;
  auto base_grad = [&](size_t offset) { return grad ? grad + offset : nullptr; };

  // logits: ∂logp_target/∂logits = onehot(target) - softmax.
  for (int t = 0; t < n; ++t) {
    const T* lp = ws.logp.data() + size_t(t) * V;
    T* dl = ws.dlogits.data() + size_t(t) * V;
    const T g = dlogp[t];
    for (int v = 0; v < V; ++v) dl[v] = -g * std::exp(lp[v]);
    dl[targets[t]] += g;
  }
  // Head: logits = h_f · Hᵀ (H = E when tied). H [V, d] is already the "[in, out]" form for
  // dh = dlogits · H.
  matmul(ws.dlogits.data(), n, V, w + lay.head, d, ws.dh.data());
  if (grad) matmul_weight_grad(ws.dlogits.data(), n, V, ws.h_f.data(), d, grad + lay.head);
  if (lora && lora->lay->has_head)
    lora_backward(*lora, lora->lay->head, ws.h_f.data(), ws.head_us.data(), ws.dlogits.data(), n,
                  ws.dh.data(), lora_grad, ws.dus, ws.tscratch, ws.ltmp);

  std::fill(ws.dx.begin(), ws.dx.end(), T(0));
  for (int t = 0; t < n; ++t)
    rmsnorm_row_backward(ws.x_out.data() + size_t(t) * d, w + lay.norm, d, ws.inv_f[t],
                         ws.dh.data() + size_t(t) * d, ws.dx.data() + size_t(t) * d,
                         base_grad(lay.norm));

  for (int li = c.n_layers - 1; li >= 0; --li) {
    const LayerOffsets& o = lay.layers[li];
    LayerActs<T>& a = ws.layers[li];
    // Target t's low-rank term: dy -> dA, dB, and dx += dy B A scale.
    auto adapt_back = [&](int t, const T* x, const T* dy, T* dx) {
      lora_backward(*lora, lora->lay->layers[li][t], x, a.us(t, n, r), dy, n, dx, lora_grad, ws.dus,
                    ws.tscratch, ws.ltmp);
    };
    // MLP: x_out = x_mid + act · Wdᵀ, act = silu(gate) * up.
    matmul(ws.dx.data(), n, d, w + o.down, f, ws.dact.data());
    if (grad) matmul_weight_grad(ws.dx.data(), n, d, a.act.data(), f, grad + o.down);
    if (lora) adapt_back(kDown, a.act.data(), ws.dx.data(), ws.dact.data());
    for (size_t i = 0; i < N * f; ++i) {
      const T g = a.gate[i], s = a.sig[i];
      ws.dup[i] = ws.dact[i] * g * s;
      ws.dgate[i] = ws.dact[i] * a.up[i] * s * (T(1) + g * (T(1) - s));
    }
    matmul(ws.dgate.data(), n, f, w + o.gate, d, ws.dh.data());
    matmul(ws.dup.data(), n, f, w + o.up, d, ws.dh.data(), true);
    if (grad) {
      matmul_weight_grad(ws.dgate.data(), n, f, a.h2.data(), d, grad + o.gate);
      matmul_weight_grad(ws.dup.data(), n, f, a.h2.data(), d, grad + o.up);
    }
    if (lora) {
      adapt_back(kGate, a.h2.data(), ws.dgate.data(), ws.dh.data());
      adapt_back(kUp, a.h2.data(), ws.dup.data(), ws.dh.data());
    }
    for (int t = 0; t < n; ++t)
      rmsnorm_row_backward(a.x_mid.data() + size_t(t) * d, w + o.ln2, d, a.inv2[t],
                           ws.dh.data() + size_t(t) * d, ws.dx.data() + size_t(t) * d,
                           base_grad(o.ln2));
    // Attention: x_mid = x_in + ctx · Woᵀ.
    matmul(ws.dx.data(), n, d, w + o.wo, d, ws.dctx.data());
    if (grad) matmul_weight_grad(ws.dx.data(), n, d, a.ctx.data(), d, grad + o.wo);
    if (lora) adapt_back(kO, a.ctx.data(), ws.dx.data(), ws.dctx.data());
    attention_backward(a.q.data(), a.k.data(), a.v.data(), a.probs.data(), ws.dctx.data(), n, H, hd,
                       scale, ws.dq.data(), ws.dk.data(), ws.dv.data(), ws.att);
    for (int t = 0; t < n; ++t) {
      const T* cs = net.rope_cos + size_t(t) * half;
      const T* sn = net.rope_sin + size_t(t) * half;
      rope_row_backward(ws.dq.data() + size_t(t) * d, H, hd, cs, sn);
      rope_row_backward(ws.dk.data() + size_t(t) * d, H, hd, cs, sn);
    }
    matmul(ws.dq.data(), n, d, w + o.wq, d, ws.dh.data());
    matmul(ws.dk.data(), n, d, w + o.wk, d, ws.dh.data(), true);
    matmul(ws.dv.data(), n, d, w + o.wv, d, ws.dh.data(), true);
    if (grad) {
      matmul_weight_grad(ws.dq.data(), n, d, a.h1.data(), d, grad + o.wq);
      matmul_weight_grad(ws.dk.data(), n, d, a.h1.data(), d, grad + o.wk);
      matmul_weight_grad(ws.dv.data(), n, d, a.h1.data(), d, grad + o.wv);
    }
    if (lora) {
      adapt_back(kQ, a.h1.data(), ws.dq.data(), ws.dh.data());
      adapt_back(kK, a.h1.data(), ws.dk.data(), ws.dh.data());
      adapt_back(kV, a.h1.data(), ws.dv.data(), ws.dh.data());
    }
    for (int t = 0; t < n; ++t)
      rmsnorm_row_backward(a.x_in.data() + size_t(t) * d, w + o.ln1, d, a.inv1[t],
                           ws.dh.data() + size_t(t) * d, ws.dx.data() + size_t(t) * d,
                           base_grad(o.ln1));
  }
  if (!grad) return;
  for (int t = 0; t < n; ++t) {
    T* row = grad + lay.embed + size_t(tokens[t]) * d;
    const T* dxt = ws.dx.data() + size_t(t) * d;
    for (int i = 0; i < d; ++i) row[i] += dxt[i];
  }
}

}  // namespace flare::model::detail
