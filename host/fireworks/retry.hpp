#pragma once
// The protocol's retry rules: 404/425 while a deployment is not ready or is
// hotloading (fixed interval), and 408/429/5xx/connection errors/truncated
// bodies with jittered exponential backoff honouring Retry-After.
#include <random>

namespace flare::fireworks {

struct RetryPolicy {
  int max_attempts = 7;  // transient failures: attempts in total
  double backoff_initial_s = 2;
  double backoff_max_s = 30;
  int not_ready_attempts = 10;  // 404/425: attempts in total
  double not_ready_interval_s = 5;
  bool retry_not_ready = false;  // whether 404/425 are retried at all
};

enum class RetryClass { Permanent, NotReady, Transient };

// For an HTTP status (status 0 = transport failure, retryable or not).
RetryClass classify(int status, bool transport_retryable, bool retry_not_ready);

// Delay before attempt `failures + 1`, after `failures` failed attempts of the
// class. Retry-After (>= 0) replaces the backoff (capped at 300 s).
double retry_delay(const RetryPolicy& policy, RetryClass cls, int failures, double retry_after_s,
                   std::mt19937_64& rng);

// Whether another attempt is allowed after `failures` failures of the class.
bool may_retry(const RetryPolicy& policy, RetryClass cls, int failures);

}  // namespace flare::fireworks
