// Trainer: forward + backward over a batch of datums split across threads,
// gradient accumulation, and AdamW on fp32 master weights.
#include <cmath>
#include <exception>
#include <stdexcept>
#include <thread>

#include "emulator/model/datum_check.hpp"
#include "emulator/model/losses.hpp"
#include "emulator/model/trainer_impl.hpp"

namespace flare::model {

namespace {

struct DatumStats {
  double loss = 0;
  double ratio_sum = 0;
  double kl_sum = 0;
  long metric_tokens = 0;  // tokens that carry sampler logprobs and a nonzero advantage
  long clipped = 0;
};

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
  m.thread_grad.resize(threads);
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
  detail::check_data(cfg, data, loss);
  ForwardBackwardResult res;
  res.logprobs.resize(data.size());
  std::vector<DatumStats> stats(data.size());
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

  auto process = [&](size_t i, detail::SeqWork<float>& ws, float* g) {
    const Datum& d = data[i];
    const size_t n = d.tokens.size();
    std::vector<float>& lp = res.logprobs[i];
    lp.resize(n);
    detail::sequence_forward(net, d.tokens, d.target_tokens, ws, lp.data());
    std::vector<float> dlogp(n);
    DatumStats& st = stats[i];
    for (size_t t = 0; t < n; ++t) {
      const float weight = d.weights.empty() ? 1.0f : d.weights[t];
      const float slp = d.sampler_logprobs.empty() ? 0.0f : d.sampler_logprobs[t];
      const float adv = d.advantages.empty() ? 0.0f : d.advantages[t];
      const auto tl = detail::token_loss<float>(loss, lc, lp[t], weight, slp, adv);
      st.loss += tl.loss;
      dlogp[t] = tl.dlogp;
      if (!d.sampler_logprobs.empty() && (d.advantages.empty() || adv != 0.0f)) {
        const double log_r = double(lp[t]) - double(slp);  // log(trainer / sampler)
        const double r = std::exp(log_r);
        st.ratio_sum += r;
        st.kl_sum += (r - 1.0) - log_r;
        st.metric_tokens += 1;
        if (loss == LossFn::Ppo && (r < 1.0 - lc.clip_low || r > 1.0 + lc.clip_high))
          st.clipped += 1;
      }
    }
    if (backward)
      detail::sequence_backward(net, d.tokens, d.target_tokens, ws, dlogp.data(),
                                use_lora ? nullptr : g, use_lora ? g : nullptr);
  };

  const int parts = int(std::min<size_t>(size_t(threads), std::max<size_t>(1, data.size())));
  const std::vector<size_t> bounds = split_by_tokens(data, parts);
  auto worker = [&](int k) {
    float* g = nullptr;
    if (backward) {
      thread_grad[k].assign(n_trained, 0.0f);
      g = thread_grad[k].data();
    }
    for (size_t i = bounds[k]; i < bounds[k + 1]; ++i) process(i, work[k], g);
  };
  if (parts == 1) {
    worker(0);
  } else {
    std::vector<std::exception_ptr> errors(parts);
    std::vector<std::thread> pool;
    for (int k = 1; k < parts; ++k)
      pool.emplace_back([&, k] {
        try {
          worker(k);
        } catch (...) {
          errors[k] = std::current_exception();
        }
      });
    try {
      worker(0);
    } catch (...) {
      errors[0] = std::current_exception();
    }
    for (std::thread& t : pool) t.join();
    for (const std::exception_ptr& e : errors)
      if (e) std::rethrow_exception(e);
  }
  if (backward)  // fixed summation order: independent of thread timing
    for (int k = 0; k < parts; ++k) {
      const float* tg = thread_grad[k].data();
      for (size_t i = 0; i < n_trained; ++i) grad[i] += tg[i];
    }

  long metric_tokens = 0, clipped = 0;
  double ratio_sum = 0, kl_sum = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    res.loss += stats[i].loss;
    ratio_sum += stats[i].ratio_sum;
    kl_sum += stats[i].kl_sum;
    metric_tokens += stats[i].metric_tokens;
    clipped += stats[i].clipped;
    res.tokens += long(data[i].tokens.size());
  }
  if (metric_tokens > 0) {
    res.mean_ratio = ratio_sum / double(metric_tokens);
    res.kl = kl_sum / double(metric_tokens);
    res.clip_fraction = double(clipped) / double(metric_tokens);
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
