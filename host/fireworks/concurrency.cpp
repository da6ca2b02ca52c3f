#include "fireworks/concurrency.hpp"

#include <algorithm>
#include <cmath>

#include "runtime/error.hpp"

namespace flare::fireworks {
namespace {
constexpr double kMaxIncreaseFactor = 4.0;  // the SDK's _MAX_INCREASE_FACTOR
constexpr double kMinPqFloor = 0.001;       // and _MIN_PQ_FLOOR
}  // namespace

ConcurrencyController::ConcurrencyController(ConcurrencyOptions options)
    : options_(options), window_(options.initial_window) {
  if (!options_.adaptive) {
    if (options_.fixed_window < 1) throw Error("invalid_argument", "concurrency must be >= 1");
    window_ = options_.fixed_window;
    return;
  }
  if (options_.min_window < 1 || options_.max_window < options_.min_window)
    throw Error("invalid_argument",
                "adaptive concurrency bounds must satisfy 1 <= adaptive_min <= adaptive_max");
  if (options_.adjustment_interval < 0)
    throw Error("invalid_argument", "adjustment_interval must be non-negative");
  if (!(options_.ema_alpha > 0 && options_.ema_alpha <= 1))
    throw Error("invalid_argument", "ema_alpha must be in (0, 1]");
  if (!(options_.multiplicative_decrease > 0 && options_.multiplicative_decrease < 1))
    throw Error("invalid_argument", "multiplicative_decrease must be in (0, 1)");
  if (!(options_.prefill_queue_target > 0))
    throw Error("invalid_argument", "prefill_queue_target must be > 0 seconds");
}

int ConcurrencyController::window_size() const {
  if (!options_.adaptive) return options_.fixed_window;
  return std::max(options_.min_window,
                  std::min(options_.max_window, static_cast<int>(std::floor(window_))));
}

double ConcurrencyController::average_pq() const {
  return pq_sum_ / pq_count_;
}

void ConcurrencyController::release(const ServerMetrics* m) {
  if (!options_.adaptive) return;
  if (m) {
    if (m->prefill_queue_duration >= 0) {
      pq_sum_ += m->prefill_queue_duration;
      ++pq_count_;
    }
    ++step_metrics_;
    if (m->cached_prompt_tokens >= 0) step_cache_hits_ += m->cached_prompt_tokens;
    if (m->prompt_tokens >= 0) step_cache_total_ += m->prompt_tokens;
  }
  if (options_.adjustment_interval > 0 && ++interval_requests_ >= options_.adjustment_interval) {
    if (pq_count_ > 0) update_window(average_pq());
    pq_sum_ = 0;
    pq_count_ = 0;
    interval_requests_ = 0;
  }
}

StepSummary ConcurrencyController::step_completed() {
  StepSummary out;
  out.emplace_back("window", window_size());
  if (!options_.adaptive) return out;
  out.emplace_back("requests", step_metrics_);
  if (pq_count_ > 0) {
    double avg = average_pq();
    out.emplace_back("avg_pq", avg);
    update_window(avg);
    out.emplace_back("window_after", window_size());
  }
  if (step_cache_total_ > 0)
    out.emplace_back("cache_hit_rate", static_cast<double>(step_cache_hits_) /
                                           static_cast<double>(step_cache_total_));
  if (ema_ >= 0) out.emplace_back("ema_pq", ema_);
  pq_sum_ = 0;
  pq_count_ = 0;
  interval_requests_ = 0;
  step_metrics_ = 0;
  step_cache_hits_ = 0;
  step_cache_total_ = 0;
  return out;
}

void ConcurrencyController::update_window(double avg) {
  const ConcurrencyOptions& o = options_;
  ema_ = ema_ < 0 ? avg : o.ema_alpha * avg + (1 - o.ema_alpha) * ema_;
  if (ema_ > o.prefill_queue_target) {
    window_ *= o.multiplicative_decrease;
  } else {
    double headroom = o.prefill_queue_target / std::max(ema_, kMinPqFloor);
    window_ += o.additive_increase * std::min(headroom, kMaxIncreaseFactor);
  }
  window_ =
      std::clamp(window_, static_cast<double>(o.min_window), static_cast<double>(o.max_window));
}

}  // namespace flare::fireworks
