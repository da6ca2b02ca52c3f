// Retry classes and delays, redaction, URL rules and error wording.
#include <doctest/doctest.h>

#include "fireworks/api_error.hpp"
#include "fireworks/connection.hpp"
#include "fireworks/redact.hpp"
#include "fireworks/rest_call.hpp"
#include "fireworks/retry.hpp"
#include "fireworks/sampler.hpp"

using namespace flare::fireworks;

TEST_CASE("statuses map to the protocol's retry classes") {
  CHECK(classify(404, false, true) == RetryClass::NotReady);
  CHECK(classify(425, false, true) == RetryClass::NotReady);
  CHECK(classify(404, false, false) == RetryClass::Permanent);
  for (int s : {408, 429, 500, 502, 503, 504})
    CHECK(classify(s, false, true) == RetryClass::Transient);
  CHECK(classify(400, false, true) == RetryClass::Permanent);
  CHECK(classify(0, true, true) == RetryClass::Transient);
  CHECK(classify(0, false, true) == RetryClass::Permanent);
}

// The SDK's DeploymentSampler: _RETRY_MAX_ATTEMPTS = 7 attempts for transient
// failures, and async_completions_stream retries 404/425 hotload_max_retries = 10
// times, hotload_retry_interval = 5 s apart (11 attempts in all).
TEST_CASE("SDK sampler limits: 7 transient attempts, 404/425 retried 10 times at 5 s") {
  RetryPolicy p = SamplerOptions{}.retry;
  CHECK(p.retry_not_ready);
  CHECK(may_retry(p, RetryClass::Transient, 6));
  CHECK_FALSE(may_retry(p, RetryClass::Transient, 7));
  CHECK(may_retry(p, RetryClass::NotReady, 10));
  CHECK_FALSE(may_retry(p, RetryClass::NotReady, 11));
  std::mt19937_64 rng(1);
  CHECK(retry_delay(p, RetryClass::NotReady, 3, -1, rng) == 5.0);
  CHECK(retry_delay(p, RetryClass::NotReady, 3, 60.0, rng) == 5.0);  // the SDK ignores it here
}

// The SDK's _backoff_after_transient: sleep = backoff * (0.5 + random()), the
// backoff starting at 2 s and doubling to at most 30 s.
TEST_CASE("SDK backoff: 2 s doubling to 30 s, jittered 0.5-1.5x") {
  RetryPolicy p = SamplerOptions{}.retry;
  std::mt19937_64 rng(1);
  for (int failures = 1; failures <= 8; ++failures) {
    double base = std::min(30.0, 2.0 * (1 << (failures - 1)));
    double lo = 1e9, hi = 0;
    for (int i = 0; i < 400; ++i) {
      double d = retry_delay(p, RetryClass::Transient, failures, -1, rng);
      CHECK(d >= base * 0.5);
      CHECK(d < base * 1.5);
      lo = std::min(lo, d);
      hi = std::max(hi, d);
    }
    // Both halves of the range are used: the jitter goes above the base, too.
    CHECK(lo < base * 0.7);
    CHECK(hi > base * 1.3);
  }
}

// The SDK honours Retry-After "as a floor on the sleep, still bounded by
// _RETRY_MAX_BACKOFF_S" (30 s): max(jittered, min(retry_after, 30)).
TEST_CASE("SDK Retry-After: a floor under the jittered backoff, capped at 30 s") {
  RetryPolicy p = SamplerOptions{}.retry;
  std::mt19937_64 rng(7);
  CHECK(retry_delay(p, RetryClass::Transient, 1, 7.0, rng) == 7.0);  // above 1-3 s of backoff
  CHECK(retry_delay(p, RetryClass::Transient, 1, 1e6, rng) == 30.0);
  for (int i = 0; i < 100; ++i) {
    double d = retry_delay(p, RetryClass::Transient, 4, 0.5, rng);  // backoff 16 s wins
    CHECK(d >= 8.0);
    CHECK(d < 24.0);
  }
  // Control-plane calls keep a longer cap (a scaling-up deployment's hint).
  RetryPolicy rest = flare::fireworks::RestRequest{}.retry;
  CHECK(retry_delay(rest, RetryClass::Transient, 1, 120.0, rng) == 120.0);
}

TEST_CASE("keys are redacted everywhere") {
  CHECK(redact_key("fw_1234567890abcdef") ==
        "fw_\xE2\x80\xA6"
        "cdef");
  CHECK(redact_key("flare_local_0123456789abcdef") ==
        "flare_\xE2\x80\xA6"
        "cdef");
  CHECK(redact_key("shortkey") == "<redacted>");
  std::string key = "fw_1234567890abcdef";
  std::string text = "a ";
  text.append(key).append(" b ").append(key);
  CHECK(redact_text(text, key) ==
        "a fw_\xE2\x80\xA6"
        "cdef b fw_\xE2\x80\xA6"
        "cdef");
  flare::net::Response r;
  r.status = 401;
  r.body = R"({"error":{"code":"UNAUTHENTICATED","message":"bad key fw_1234567890abcdef"}})";
  flare::Error e = error_from_response(r, "get deployment x", key);
  CHECK(e.code == "unauthenticated");
  CHECK(e.status == 401);
  CHECK_FALSE(e.retryable);
  std::string msg = e.what();
  CHECK(msg.find(key) == std::string::npos);
  CHECK(msg.find("get deployment x: HTTP 401 UNAUTHENTICATED") == 0);
  CHECK(msg.find("FIREWORKS_API_KEY") != std::string::npos);
}

TEST_CASE("errors carry Retry-After, request ids and the scaling-up hint") {
  flare::net::Response r;
  r.status = 503;
  r.body =
      R"({"error":{"code":"DEPLOYMENT_SCALING_UP","message":"DEPLOYMENT_SCALING_UP: no replica"}})";
  r.headers.add("Retry-After", "3");
  r.headers.add("x-request-id", "rid-1");
  CHECK(retry_after_s(r.headers) == 3.0);
  flare::Error e = error_from_response(r, "sample", "k");
  CHECK(e.retryable);
  CHECK(e.request_id == "rid-1");
  CHECK(std::string(e.what()).find("scaling up") != std::string::npos);
  flare::net::Headers none;
  CHECK(retry_after_s(none) == -1);
}

TEST_CASE("connections normalise URLs and pick the protocol's headers") {
  Connection c;
  c.api_key = std::string(1, 'k');
  c.base_url = "http://127.0.0.1:8000//";
  c.normalise();
  CHECK(c.base_url == "http://127.0.0.1:8000");
  CHECK(c.url_of(Plane::Inference) == "http://127.0.0.1:8000");
  flare::net::Headers control, inference;
  c.add_headers(control, Plane::Control, true);
  c.add_headers(inference, Plane::Inference, false);
  CHECK(*control.find("X-Api-Key") == "k");
  CHECK(control.find("Authorization") == nullptr);
  CHECK(*control.find("Content-Type") == "application/json");
  CHECK(*inference.find("Authorization") == "Bearer k");
  Connection bad;
  bad.base_url = "ftp://x";
  CHECK_THROWS_AS(bad.normalise(), flare::Error);
  CHECK(default_verify_ssl("https://api.fireworks.ai"));
  CHECK_FALSE(default_verify_ssl("https://127.0.0.1"));
  CHECK_FALSE(default_verify_ssl("http://api.fireworks.ai"));
}

TEST_CASE("TLS verification follows each plane's URL unless verify_ssl overrides it") {
  Connection c;
  c.base_url = "https://api.fireworks.ai";
  c.inference_url = "http://127.0.0.1:8080";
  c.normalise();
  CHECK(c.verify_tls(Plane::Control));
  CHECK_FALSE(c.verify_tls(Plane::Inference));
  CHECK(c.verify_tls(Plane::Hotload));
  c.verify_ssl = 0;
  CHECK_FALSE(c.verify_tls(Plane::Control));
  c.verify_ssl = 1;
  CHECK(c.verify_tls(Plane::Inference));
}
