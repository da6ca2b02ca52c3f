// Trainer: forward + backward over a batch of datums split across threads,
// gradient accumulation, and AdamW on fp32 master weights.
#include <cmath>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "emulator/model/datum_check.hpp"
#include "emulator/model/losses.hpp"
#include "emulator/model/trainer_impl.hpp"
#include "runtime/thread_pool.hpp"

namespace flare::model {

namespace {

// Splits [0, data.size()) into `parts` contiguous ranges of similar token counts.
std::vector<size_t> split_by_tokens(const std::vector<Datum>& data, int parts) {
  size_t total = 0;
  for (const Datum& d : data) total += d.tokens.size();
  std::vector<size_t> bounds{0};
  size_t acc = 0;
  for (size_t i = 0; i < data.size() && int(bounds.size()) < parts; ++i) {
    acc += data[i].tokens.size();
    if (acc * parts >= total * bounds.size()) bounds.push_back(i + 1);
  }
  while (bounds.size() < size_t(parts) + 1) bounds.push_back(data.size());
  bounds.back() = data.size();
  return bounds;
}

}  // namespace

Trainer::Trainer(const Config& cfg, Weights master, int threads, const LoraConfig& lora)
    : impl_(std::make_unique<Impl>()) {
  detail::check_weights(cfg, master);
  Impl& m = *impl_;
  m.cfg = cfg;
  m.lay = detail::make_layout(cfg, master);
  if (lora.rank != 0) {
    if (!(lora.alpha > 0) || !std::isfinite(lora.alpha))
      throw std::invalid_argument("lora alpha must be a finite number > 0");
    m.llay = detail::make_lora_layout(cfg, lora.rank, lora.train_unembed);  // checks the rank
    m.lora = lora;
    m.lora_master = init_lora(cfg, lora);
    m.scale = lora_scale(lora.alpha, lora.rank);
  }
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  m.threads = threads;
  m.master = std::move(master);
  const detail::RopeTables rope = detail::rope_tables(cfg);
  m.rope_cos.assign(rope.cos.begin(), rope.cos.end());
  m.rope_sin.assign(rope.sin.begin(), rope.sin.end());
  m.grad.assign(m.trained_count(), 0.0f);
  m.adam_m.assign(m.trained_count(), 0.0f);
  m.adam_v.assign(m.trained_count(), 0.0f);
  m.work.resize(threads);
  m.refresh_compute_weights();
}

Trainer::~Trainer() = default;

const Config& Trainer::config() const {
  return impl_->cfg;
}
long Trainer::step() const {
  return impl_->step;
}
const Weights& Trainer::master() const {
  return impl_->master;
}
const LoraConfig& Trainer::lora() const {
  return impl_->lora;
}

Weights Trainer::adapter_weights() const {
  Weights w = impl_->lora_master;
  round_to_bf16(w);
  return w;
}

Weights Trainer::merged_weights() const {
  if (impl_->lora.rank == 0) return sampler_weights();
  Weights w = merge_lora(impl_->cfg, sampler_weights(), adapter_weights(), impl_->scale);
  round_to_bf16(w);
  return w;
}

Weights Trainer::sampler_weights() const {
  Weights w = impl_->master;
  round_to_bf16(w);
  return w;
}

void Trainer::Impl::refresh_compute_weights() {
  if (lora.rank > 0) {
    lora16 = detail::flatten(llay, lora_master);
    for (float& x : lora16) x = round_to_bf16(x);
    lorat16.resize(lora16.size());
    detail::transposed_copy(llay, lora16.data(), lorat16.data());
    if (!w16.empty()) return;  // the base is frozen
  }
  w16 = detail::flatten(lay, master);
  for (float& x : w16) x = round_to_bf16(x);
  wt16.resize(w16.size());
  detail::transposed_copy(cfg, lay, w16.data(), wt16.data());
}

ForwardBackwardResult Trainer::Impl::run(const std::vector<Datum>& data, LossFn loss,
                                         const LossConfig& lc, bool backward) {
  detail::check_data(cfg, data, loss, lc);
  ForwardBackwardResult res;
  res.logprobs.resize(data.size());
  std::vector<detail::LossStats> stats(data.size());
  const std::vector<double> scales = detail::datum_scales(loss, lc, data);
  const detail::LoraNet<float> adapter{&llay, lora16.data(), lorat16.data(), scale};
  const detail::NetView<float> net{&cfg,
                                   &lay,
                                   w16.data(),
                                   wt16.data(),
                                   rope_cos.data(),
                                   rope_sin.data(),
                                   lora.rank > 0 ? &adapter : nullptr};
  const bool use_lora = lora.rank > 0;
  const size_t n_trained = trained_count();
  // dpo couples the two datums of a pair: every sequence's logprobs come first, the
  // gradient of each after (a second forward rebuilds the activations backward needs).
  const bool pairwise = loss == LossFn::Dpo;
  std::vector<std::vector<float>> dlogp(data.size());

  auto forward_one = [&](size_t i, detail::SeqWork<float>& ws) {
    const Datum& d = data[i];
    res.logprobs[i].resize(d.tokens.size());
    detail::sequence_forward(net, d.tokens, d.target_tokens, ws, res.logprobs[i].data());
  };
  auto backward_one = [&](size_t i, detail::SeqWork<float>& ws, float* g) {
    const Datum& d = data[i];
    detail::sequence_backward(net, d.tokens, d.target_tokens, ws, dlogp[i].data(),
                              use_lora ? nullptr : g, use_lora ? g : nullptr);
  };

  // The datums fall into chunks of similar token counts, each with its own
  // gradient buffer; the pool's threads take chunks as they come free (a thread
  // slowed by other load does less), and the buffers are summed in chunk order,
  // so the result does not depend on which thread ran what.
  const size_t chunks = std::min(data.size(), size_t(kChunksPerThread) * size_t(threads));
  const std::vector<size_t> bounds = split_by_tokens(data, int(std::max<size_t>(1, chunks)));
  if (backward && chunk_grad.size() < chunks) chunk_grad.resize(chunks);
  // Runs body(i, work, grad) for every datum; `grad` is the datum's chunk gradient
  // buffer (zeroed) when with_grad, else nullptr.
  auto for_each_datum = [&](bool with_grad, const auto& body) {
    std::mutex free_mu;
    std::vector<detail::SeqWork<float>*> free_work;
    for (auto& w : work) free_work.push_back(&w);
    flare::parallel_for(chunks, unsigned(threads), [&](size_t k) {
      detail::SeqWork<float>* ws;
      {
        std::lock_guard lock(free_mu);
        ws = free_work.back();
        free_work.pop_back();
      }
      float* g = nullptr;
      if (with_grad) {
        chunk_grad[k].assign(n_trained, 0.0f);
        g = chunk_grad[k].data();
      }
      try {
        for (size_t i = bounds[k]; i < bounds[k + 1]; ++i) body(i, *ws, g);
      } catch (...) {
        std::lock_guard lock(free_mu);
        free_work.push_back(ws);
        throw;
      }
      std::lock_guard lock(free_mu);
      free_work.push_back(ws);
    });
  };

  if (pairwise) {
    for_each_datum(false,
                   [&](size_t i, detail::SeqWork<float>& ws, float*) { forward_one(i, ws); });
    for (size_t i = 0; i + 1 < data.size(); i += 2) {
      dlogp[i].resize(data[i].tokens.size());
      dlogp[i + 1].resize(data[i + 1].tokens.size());
      detail::dpo_pair<float>(lc, data[i], data[i + 1], res.logprobs[i].data(),
                              res.logprobs[i + 1].data(), float(scales[i]), dlogp[i].data(),
                              dlogp[i + 1].data(), stats[i]);
    }
    if (backward)
      for_each_datum(true, [&](size_t i, detail::SeqWork<float>& ws, float* g) {
        forward_one(i, ws);
        backward_one(i, ws, g);
      });
  } else {
    for_each_datum(backward, [&](size_t i, detail::SeqWork<float>& ws, float* g) {
      forward_one(i, ws);
      const float* lp = res.logprobs[i].data();
      dlogp[i].resize(data[i].tokens.size());
      detail::datum_loss<float>(loss, lc, data[i], lp, lp, float(scales[i]), dlogp[i].data(),
                                stats[i]);
      if (backward) backward_one(i, ws, g);
      std::vector<float>().swap(dlogp[i]);
    });
  }
  if (backward) {  // fixed summation order: independent of thread timing
    constexpr size_t kSlice = size_t(1) << 16;
    flare::parallel_for((n_trained + kSlice - 1) / kSlice, unsigned(threads), [&](size_t s) {
      const size_t lo = s * kSlice, hi = std::min(n_trained, lo + kSlice);
      for (size_t k = 0; k < chunks; ++k) {
        const float* cg = chunk_grad[k].data();
        for (size_t i = lo; i < hi; ++i) grad[i] += cg[i];
      }
    });
  }

  detail::LossStats total;
  for (size_t i = 0; i < data.size(); ++i) {
    const detail::LossStats& st = stats[i];
    total.loss += st.loss;
    total.ratio_sum += st.ratio_sum;
    total.mismatch_sum += st.mismatch_sum;
    total.metric_tokens += st.metric_tokens;
    total.clipped += st.clipped;
    total.tis_capped += st.tis_capped;
    total.kl_sum += st.kl_sum;
    total.kl_tokens += st.kl_tokens;
    total.pairs += st.pairs;
    total.pairs_right += st.pairs_right;
    total.margin_sum += st.margin_sum;
    res.tokens += long(data[i].tokens.size());
  }
  res.loss = total.loss;
  if (total.metric_tokens > 0) {
    const double n = double(total.metric_tokens);
    res.mean_ratio = total.ratio_sum / n;
    res.logprob_mismatch = total.mismatch_sum / n;
    res.clip_fraction = double(total.clipped) / n;
    res.tis_fraction = double(total.tis_capped) / n;
  }
  res.kl_tokens = total.kl_tokens;
  if (total.kl_tokens > 0) res.kl = total.kl_sum / double(total.kl_tokens);
  if (total.pairs > 0) {
    res.preference_accuracy = double(total.pairs_right) / double(total.pairs);
    res.reward_margin = total.margin_sum / double(total.pairs);
  }
  return res;
}

ForwardBackwardResult Trainer::forward_backward(const std::vector<Datum>& data, LossFn loss,
                                                const LossConfig& cfg) {
  return impl_->run(data, loss, cfg, true);
}

ForwardBackwardResult Trainer::forward(const std::vector<Datum>& data, LossFn loss,
                                       const LossConfig& cfg) {
  return impl_->run(data, loss, cfg, false);
}

OptimResult Trainer::optim_step(const AdamParams& p) {
  Impl& m = *impl_;
  if (!(p.learning_rate >= 0) || !(p.beta1 >= 0 && p.beta1 < 1) || !(p.beta2 >= 0 && p.beta2 < 1) ||
      !(p.eps >= 0) || !(p.weight_decay >= 0) || !(p.grad_clip_norm >= 0))
    throw std::invalid_argument(
        "optim_step: learning_rate, eps, weight_decay and grad_clip_norm must be >= 0 and "
        "betas in [0, 1)");
  for (double v : {p.learning_rate, p.beta1, p.beta2, p.eps, p.weight_decay, p.grad_clip_norm}) {
    if (!std::isfinite(v))
      throw std::invalid_argument("optim_step: every parameter must be finite");
  }
  double sq = 0;
  for (float g : m.grad) sq += double(g) * double(g);
  const double norm = std::sqrt(sq);
  if (!std::isfinite(norm)) {
    // A NaN or infinite gradient would poison every weight: the step is not
    // taken and the gradient is dropped, so training can go on from here.
    std::fill(m.grad.begin(), m.grad.end(), 0.0f);
    throw std::invalid_argument("optim_step: the accumulated gradient is not finite (norm " +
                                std::to_string(norm) +
                                "); the step was not taken and the gradient was discarded");
  }
  const double scale =
      p.grad_clip_norm > 0 && norm > p.grad_clip_norm ? p.grad_clip_norm / (norm + 1e-6) : 1.0;
  m.step += 1;
  const double bc1 = 1.0 - std::pow(p.beta1, double(m.step));
  const double bc2 = 1.0 - std::pow(p.beta2, double(m.step));
  Weights& trained = m.trained();
  for (size_t ti = 0; ti < trained.size(); ++ti) {
    std::vector<float>& w = trained[ti].data;
    const size_t off = m.trained_offsets()[ti];
    for (size_t j = 0; j < w.size(); ++j) {
      const size_t i = off + j;
      const double g = double(m.grad[i]) * scale;
      const double mi = p.beta1 * m.adam_m[i] + (1.0 - p.beta1) * g;
      const double vi = p.beta2 * m.adam_v[i] + (1.0 - p.beta2) * g * g;
      m.adam_m[i] = float(mi);
      m.adam_v[i] = float(vi);
      double x = double(w[j]);
      x -= p.learning_rate * p.weight_decay * x;
      x -= p.learning_rate * (mi / bc1) / (std::sqrt(vi / bc2) + p.eps);
      w[j] = float(x);
    }
  }
  std::fill(m.grad.begin(), m.grad.end(), 0.0f);
  m.refresh_compute_weights();
  return {norm, m.step};
}

}  // namespace flare::model
