#pragma once
// HTTP/1.1 client with one event loop (an epoll set) for every transfer in the
// process: whoever waits (wait, wait_all, run_until) pumps the loop, so all
// requests in flight progress together, and completion callbacks run from
// inside that pump. Two transports share the loop. Plain http:// to an IP
// address (no proxy variable, no connection limit, not HEAD) goes on flare's
// own keep-alive sockets: one send and one recv per request (direct_transport).
// Everything else (https, host names, proxies) goes through libcurl's multi
// interface, opened on first use (curl_transport), with easy handles and header
// lists reused from one request to the next. Both report the same error codes;
// FLARE_HTTP_LIBCURL=1 sends every request through libcurl.
//
// HTTP/1.1 only, keep-alive connections are reused, redirects are not
// followed, proxies come from the usual environment variables (libcurl's).
// Not thread-safe: use a client from one thread (shared_client() belongs to the
// thread that runs Lua).
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "runtime/error.hpp"

namespace flare::net {

// Header list in arrival order; names compare case-insensitively.
struct Headers {
  std::vector<std::pair<std::string, std::string>> items;

  // First value of `name`, or nullptr.
  const std::string* find(std::string_view name) const;
  void add(std::string name, std::string value) {
    items.emplace_back(std::move(name), std::move(value));
  }
};

struct Request {
  std::string method = "GET";
  std::string url;
  Headers headers;
  std::string body;
  double timeout_s = 60;          // whole transfer; 0 = no limit
  double connect_timeout_s = 10;  // 0 = libcurl's default
  bool verify_tls = true;         // check the server's certificate and host name (https)
};

struct Response {
  int status = 0;
  Headers headers;
  std::string body;
  double total_s = 0;
  double first_body_byte_s = -1;  // start of the request to the first body byte; -1 = no body
};

using RequestId = std::uint64_t;

// Exactly one call per submitted request: `response` on success (any HTTP
// status), `error` on a transport failure, cancellation or interrupt. The
// callback may move from *response and may submit or cancel other requests.
using DoneCallback = std::function<void(Response* response, const Error* error)>;

// A non-owning reference to a callable, valid for the duration of one call.
template <class Signature>
class FunctionRef;
template <class R, class... Args>
class FunctionRef<R(Args...)> {
 public:
  template <class F>
  FunctionRef(F&& f)  // NOLINT(google-explicit-constructor): used like a std::function
      : object_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* o, Args... args) -> R {
          return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<Args>(args)...);
        }) {}
  R operator()(Args... args) const { return call_(object_, std::forward<Args>(args)...); }

 private:
  void* object_;
  R (*call_)(void*, Args...);
};

struct ClientOptions {
  long max_host_connections = 0;    // per host:port; 0 = no limit
  long max_total_connections = 0;   // 0 = no limit
  long max_idle_connections = 256;  // size of the keep-alive cache
  bool interruptible = true;        // waits throw flare::Interrupted on SIGINT/SIGTERM
};

struct ClientStats {
  std::uint64_t requests = 0;     // transfers finished (successfully or not)
  std::uint64_t connections = 0;  // new TCP connections opened
};

class HttpClient {
 public:
  explicit HttpClient(ClientOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Validates the request (throws flare::Error "bad_url"/"bad_request" before
  // anything is sent) and starts it. The id stays valid until `on_done` ran.
  RequestId submit(Request request, DoneCallback on_done);
  // The same, but `fill` writes the request into storage the client reuses, so
  // that its strings keep their capacity from one request to the next (no
  // allocation per request on a hot path). `fill` receives the request last
  // written into that storage, or a default one: it must set every field.
  RequestId submit_with(FunctionRef<void(Request&)> fill, DoneCallback on_done);

  // Pump the loop until `id` finished (its callback ran). Unknown or finished
  // ids return at once. On SIGINT: cancels `id` and throws flare::Interrupted.
  void wait(RequestId id);
  // Same for several ids; on SIGINT all of them that are unfinished are cancelled.
  void wait_all(std::span<const RequestId> ids);
  // Pump until `done()` is true (returns true) or `timeout_s` elapsed (false).
  // On SIGINT throws flare::Interrupted after cancelling `cancel_on_interrupt`.
  bool run_until(const std::function<bool()>& done, double timeout_s,
                 std::span<const RequestId> cancel_on_interrupt = {});

  // Abort a request; its callback runs now with error code "cancelled".
  // Unknown or finished ids are ignored.
  void cancel(RequestId id);

  bool in_flight(RequestId id) const;
  std::size_t in_flight_count() const;
  ClientStats stats() const;

 private:
  struct Impl;
  RequestId start(void* transfer);
  std::unique_ptr<Impl> impl_;
};

// The process-wide client: one multi handle, one loop, for every module.
HttpClient& shared_client();

// "GET https://host/path" with any user:password@ removed; used in messages.
std::string describe_request(std::string_view method, std::string_view url);

}  // namespace flare::net
