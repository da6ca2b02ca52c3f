#pragma once
// DeploymentSampler's engine: N prompts x n samples become N*n concurrent n=1
// completion requests on the shared loop (streamed over SSE or not), under the
// SDK's concurrency controllers (adaptive by default, or a fixed window).
// Failed requests are retried per the protocol; results come back in input
// order, one slot per (prompt, sample), each a completion (with the server's
// metrics) or an error.
#include <algorithm>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "fireworks/completion_codec.hpp"
#include "fireworks/concurrency.hpp"
#include "fireworks/connection.hpp"
#include "fireworks/event_loop.hpp"
#include "fireworks/retry.hpp"
#include "runtime/error.hpp"

namespace flare::fireworks {

struct SamplerOptions {
  std::string model;  // inference model, e.g. accounts/<a>/deployments/<id>
  ConcurrencyOptions concurrency;
  // The SDK's sampling retries.
  RetryPolicy retry{.max_attempts = 7,
                    .backoff_initial_s = 2.0,
                    .backoff_max_s = 30.0,
                    .not_ready_retries = 10,
                    .not_ready_interval_s = 5.0,
                    .retry_not_ready = true,
                    .retry_after_cap_s = 30};
  double timeout_s = 600;  // per request
};

struct SampleResult {
  Completion completion;
  std::optional<Error> error;
};

struct SamplerStats {
  std::uint64_t requests = 0;  // attempts sent
  std::uint64_t retries = 0;
  std::uint64_t rate_limited = 0;
  double limit = 0;  // current concurrency window
  std::size_t in_flight = 0;
  std::vector<std::string> warnings;  // each given once, in order
};

// Server metrics of the completions since the last step_completed(): sums
// and counts of what was reported, for averages.
struct StepMetrics {
  struct Series {
    double sum = 0, max = 0;
    std::uint64_t count = 0;
    void add(double v) {
      if (v < 0) return;
      sum += v;
      max = count ? std::max(max, v) : v;
      ++count;
    }
  };
  std::uint64_t completions = 0;
  Series prefill_queue, generation_queue, server_ttft, client_ttft, processing, concurrent;
  std::uint64_t cached_prompt_tokens = 0, prompt_tokens = 0;
};

class Sampler;

class SampleBatch : public Cancellable, public std::enable_shared_from_this<SampleBatch> {
 public:
  bool done() const { return remaining_ == 0; }
  bool wait(double timeout_s = -1);  // pumps the loop; throws Interrupted

  int prompt_count() const { return prompt_count_; }
  int n() const { return n_; }
  // Slot prompt * n + sample; valid once done().
  const std::vector<SampleResult>& results() const { return results_; }
  // In raise mode: the first error (the rest of the batch was cancelled).
  const std::optional<Error>& failure() const { return failure_; }
  const SamplingParams& params() const { return params_; }

  void cancel_all(const char* code) override;

 private:
  friend class Sampler;
  struct Item {
    int attempts = 0;
    int transient_failures = 0;
    int not_ready_failures = 0;
    bool final = false;
    net::RequestId in_flight = 0;
    TimerId timer = 0;
  };
  void finish_item(std::size_t index);

  std::shared_ptr<Sampler> sampler_;
  std::vector<Prompt> prompts_;
  SamplingParams params_;
  int prompt_count_ = 0;
  int n_ = 1;
  bool raise_on_error_ = true;
  std::string id_prefix_;
  std::string body_head_;  // the request body before the prompt
  std::string body_tail_;  // and after it, when no seed varies per sample
  std::vector<Item> items_;
  std::vector<SampleResult> results_;
  std::size_t remaining_ = 0;
  std::optional<Error> failure_;
};

class Sampler : public std::enable_shared_from_this<Sampler> {
 public:
  static std::shared_ptr<Sampler> create(std::shared_ptr<const Connection> conn,
                                         SamplerOptions options);
  Sampler(std::shared_ptr<const Connection> conn, SamplerOptions options);

  // Starts the batch; raise_on_error = the first permanent failure cancels the
  // rest and is reported by failure().
  std::shared_ptr<SampleBatch> submit(std::vector<Prompt> prompts, SamplingParams params, int n,
                                      bool raise_on_error);
  SamplerStats stats() const;
  const SamplerOptions& options() const { return options_; }
  // The controller's step summary and the step's server metrics (avg_*, max_*),
  // then a new step begins.
  StepSummary step_completed();

 private:
  friend class SampleBatch;
  struct Pending {
    std::shared_ptr<SampleBatch> batch;
    std::size_t index;
  };
  void dispatch();
  void send(const std::shared_ptr<SampleBatch>& batch, std::size_t index);
  void on_done(const std::shared_ptr<SampleBatch>& batch, std::size_t index,
               net::Response* response, const Error* error);
  void fail_item(const std::shared_ptr<SampleBatch>& batch, std::size_t index, Error error);
  void note_metrics(const net::Response& response, Completion& completion, bool streamed);
  void warn_once(bool& given, const std::string& text);
  std::size_t cap() const;
  std::string describe(const SampleBatch& batch, std::size_t index) const;

  std::shared_ptr<const Connection> conn_;
  SamplerOptions options_;
  std::string url_;            // the completions URL
  net::Headers base_headers_;  // the headers of every request but x-request-id
  bool verify_tls_ = true;
  std::deque<Pending> queue_;
  std::size_t in_flight_ = 0;
  ConcurrencyController controller_;
  StepMetrics step_;
  SamplerStats stats_;
  bool warned_fallback_ = false, warned_missing_ = false;
  std::mt19937_64 rng_;
};

}  // namespace flare::fireworks
