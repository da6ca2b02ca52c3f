#pragma once
// One request in flight, as both transports see it: a slot of HttpClient that
// keeps its easy handle and its strings from one request to the next.
#include <curl/curl.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "net/http_client.hpp"

namespace flare::net {

using steady = std::chrono::steady_clock;

enum class State { Free, Running, Finished, Delivering };

// The options a transfer sets beyond the ones every transfer shares: when the
// next request on the same easy handle has the same mode, only the URL, the
// body and the header list are set again.
struct Mode {
  std::string method;
  bool has_body = false;
  long timeout_ms = -1;
  long connect_timeout_ms = -1;
  bool verify_tls = true;
  bool operator==(const Mode&) const = default;
};

struct DirectConn;

struct Transfer {
  RequestId id = 0;
  std::uint32_t index = 0;  // position in HttpClient::Impl::slots
  State state = State::Free;
  CURL* easy = nullptr;  // owned by the slot for its whole life
  bool configured = false;
  Mode mode;                             // what `easy` is configured for
  std::string configured_url;            // the URL last set on `easy`
  std::string header_text;               // header lines, each ending in '\0'
  std::vector<curl_slist> header_nodes;  // list over header_text (not libcurl's allocations)
  std::size_t header_count = 0;          // response headers of the current response
  CURLcode result = CURLE_OK;
  Request request;
  Response response;
  DoneCallback on_done;
  char error_buffer[CURL_ERROR_SIZE] = {};
  bool fresh_retry = false;  // libcurl: sent again on a new connection (FRESH_CONNECT is set)
  // Direct transfers (see DirectConn) instead of libcurl:
  bool direct = false;
  bool direct_retried = false;  // already retried once on a fresh connection
  int reconnects = 0;           // new connections after a handshake the server dropped
  bool waiting = false;         // queued for a connection (see DirectTransport)
  DirectConn* conn = nullptr;   // the connection carrying it
  std::uint64_t new_connections = 0;
  std::chrono::steady_clock::time_point started, deadline, connect_deadline;
  std::string key;  // "host:port" of its URL: the pool it takes connections from
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
};

// Seconds as libcurl's milliseconds: 0 stays 0 (no limit), anything else at least 1.
inline long to_ms(double seconds) {
  if (seconds <= 0) return 0;
  double ms = seconds * 1000.0;
  if (ms < 1) return 1;
  if (ms > static_cast<double>(std::numeric_limits<long>::max() / 2))
    return std::numeric_limits<long>::max() / 2;
  return static_cast<long>(ms);
}

}  // namespace flare::net
