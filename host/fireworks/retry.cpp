#include "fireworks/retry.hpp"

#include <algorithm>
#include <cmath>

namespace flare::fireworks {

RetryClass classify(int status, bool transport_retryable, bool retry_not_ready) {
  if (status == 0) return transport_retryable ? RetryClass::Transient : RetryClass::Permanent;
  if (status == 404 || status == 425)
    return retry_not_ready ? RetryClass::NotReady : RetryClass::Permanent;
  switch (status) {
    case 408:
    case 429:
    case 500:
    case 502:
    case 503:
    case 504:
      return RetryClass::Transient;
    default:
      return RetryClass::Permanent;
  }
}

bool may_retry(const RetryPolicy& policy, RetryClass cls, int failures) {
  switch (cls) {
    case RetryClass::Permanent:
      return false;
    case RetryClass::NotReady:
      return failures <= policy.not_ready_retries;
    case RetryClass::Transient:
      return failures < policy.max_attempts;
  }
  return false;
}

double retry_delay(const RetryPolicy& policy, RetryClass cls, int failures, double retry_after_s,
                   std::mt19937_64& rng) {
  if (cls == RetryClass::NotReady) return policy.not_ready_interval_s;
  double exp = policy.backoff_initial_s * std::pow(2.0, std::max(0, failures - 1));
  std::uniform_real_distribution<double> jitter(0.5, 1.5);
  double delay = std::min(exp, policy.backoff_max_s) * jitter(rng);
  if (retry_after_s >= 0)
    delay = std::max(delay, std::min(retry_after_s, policy.retry_after_cap_s));
  return delay;
}

}  // namespace flare::fireworks
