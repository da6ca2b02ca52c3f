#pragma once
// The protocol's retry rules, as the Fireworks SDK's DeploymentSampler applies
// them: 404/425 while a deployment is not ready or is hotloading are retried
// at a fixed interval (10 retries, 5 s apart), and 408/429/5xx, connection
// errors and truncated bodies with exponential backoff (2 s doubling to 30 s)
// jittered by 0.5-1.5x, with a server's Retry-After as a floor on the sleep,
// itself capped so a mis-set header cannot stall a run.
#include <random>

namespace flare::fireworks {

struct RetryPolicy {
  int max_attempts = 7;  // transient failures: attempts in total
  double backoff_initial_s = 2;
  double backoff_max_s = 30;
  int not_ready_retries = 10;  // 404/425: retries after the first attempt
  double not_ready_interval_s = 5;
  bool retry_not_ready = false;   // whether 404/425 are retried at all
  double retry_after_cap_s = 30;  // Retry-After beyond this is cut to it
};

enum class RetryClass { Permanent, NotReady, Transient };

// For an HTTP status (status 0 = transport failure, retryable or not).
RetryClass classify(int status, bool transport_retryable, bool retry_not_ready);

// Delay before attempt `failures + 1`, after `failures` failed attempts of the
// class. Transient: backoff_initial_s * 2^(failures-1), at most backoff_max_s,
// times a uniform jitter in [0.5, 1.5); a Retry-After (>= 0) raises it to
// min(retry_after, retry_after_cap_s). NotReady: the fixed interval.
double retry_delay(const RetryPolicy& policy, RetryClass cls, int failures, double retry_after_s,
                   std::mt19937_64& rng);

// Whether another attempt is allowed after `failures` failures of the class.
bool may_retry(const RetryPolicy& policy, RetryClass cls, int failures);

}  // namespace flare::fireworks
