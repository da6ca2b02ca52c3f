#pragma once
// One authenticated REST call of the protocol, asynchronous on the shared
// loop, with retries of transient failures (408/429/5xx, connection errors)
// per RetryPolicy. It ends with the final HTTP response (any status: the
// caller decides what a 404 or 409 means) or a transport error.
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "fireworks/connection.hpp"
#include "fireworks/event_loop.hpp"
#include "fireworks/retry.hpp"
#include "runtime/error.hpp"

namespace flare::fireworks {

struct RestRequest {
  std::string method = "GET";
  Plane plane = Plane::Control;
  std::string path;  // appended to the plane's base URL; starts with '/'
  std::string body;  // JSON text; empty = no body
  std::vector<std::pair<std::string, std::string>> headers;  // extra, e.g. fireworks-model
  double timeout_s = 0;                                      // 0 = the connection's timeout
  std::string what;  // names the operation in error messages
  RetryPolicy retry{.max_attempts = 3,
                    .backoff_initial_s = 1.0,
                    .backoff_max_s = 10.0,
                    .not_ready_retries = 0,
                    .not_ready_interval_s = 0,
                    .retry_not_ready = false,
                    .retry_after_cap_s = 300};  // Retry-After honoured up to 5 min
};

class RestCall : public Cancellable, public std::enable_shared_from_this<RestCall> {
 public:
  static std::shared_ptr<RestCall> start(std::shared_ptr<const Connection> conn,
                                         RestRequest request);

  bool done() const { return done_; }
  // Pumps the loop until done; false if timeout_s (>= 0) passed first.
  bool wait(double timeout_s = -1);
  // After done(): the final response, or the error that ended the call.
  const net::Response& response() const { return response_; }
  const std::optional<Error>& error() const { return error_; }
  const std::string& request_id() const { return request_id_; }
  const std::string& what() const { return request_.what; }
  const Connection& connection() const { return *conn_; }
  int attempts() const { return attempts_; }

  void cancel_all(const char* code) override;

  RestCall(std::shared_ptr<const Connection> conn, RestRequest request);

 private:
  void send();
  void on_done(net::Response* response, const Error* error);
  void finish();

  std::shared_ptr<const Connection> conn_;
  RestRequest request_;
  std::string url_;
  std::string request_id_;
  net::RequestId in_flight_ = 0;
  TimerId timer_ = 0;
  int attempts_ = 0;
  int failures_ = 0;
  bool done_ = false;
  net::Response response_;
  std::optional<Error> error_;
  std::mt19937_64 rng_;
};

std::string new_request_id();  // "flare-" + 16 hex digits

}  // namespace flare::fireworks
