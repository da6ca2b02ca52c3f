#pragma once
// How many completion requests a sampler keeps in flight: the Fireworks SDK's
// FixedConcurrencyController (a constant window) and AdaptiveConcurrencyController
// (AIMD on the server's prefill-queue time), with the SDK's defaults and rules:
// every `adjustment_interval` finished requests (and at step_completed()) the
// average prefill queue of that interval updates an EMA; above the target the
// window is multiplied by `multiplicative_decrease`, else it grows by
// `additive_increase` times the headroom target / EMA, capped at 4x.
#include <string>
#include <utility>
#include <vector>

#include "fireworks/completion_codec.hpp"

namespace flare::fireworks {

struct ConcurrencyOptions {
  bool adaptive = true;  // the SDK's default controller
  int fixed_window = 64;
  int initial_window = 16;
  int min_window = 1;
  int max_window = 256;
  double prefill_queue_target = 0.5;  // seconds
  double additive_increase = 1.0;
  double multiplicative_decrease = 0.5;
  double ema_alpha = 0.3;
  int adjustment_interval = 32;  // 0 = adjust only at step_completed()
};

using StepSummary = std::vector<std::pair<std::string, double>>;

class ConcurrencyController {
 public:
  explicit ConcurrencyController(ConcurrencyOptions options);  // throws invalid_argument

  // The number of requests allowed in flight now.
  int window_size() const;
  // One request attempt finished; `metrics` is null when it failed.
  void release(const ServerMetrics* metrics);
  // The SDK's step summary (window, requests, avg_pq, window_after,
  // cache_hit_rate, ema_pq; a fixed window reports only "window"); adjusts
  // the window on what the step left over and starts a new step.
  StepSummary step_completed();

  const ConcurrencyOptions& options() const { return options_; }
  double ema_prefill_queue() const { return ema_; }  // < 0 before the first adjustment

 private:
  void update_window(double avg_prefill_queue);
  double average_pq() const;

  ConcurrencyOptions options_;
  double window_;
  double ema_ = -1;
  int interval_requests_ = 0;
  double pq_sum_ = 0;
  int pq_count_ = 0;
  int step_metrics_ = 0;
  long long step_cache_hits_ = 0;
  long long step_cache_total_ = 0;
};

}  // namespace flare::fireworks
