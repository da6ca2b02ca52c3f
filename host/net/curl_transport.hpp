#pragma once
// The libcurl transport: every request that does not go direct (https,
// proxies, host names, HEAD, connection limits). One multi handle driven by
// curl_multi_socket_action on the client's epoll set; easy handles, header
// lists and response header strings are reused from one request to the next.
#include <cstdint>
#include <deque>
#include <memory>

#include "net/transfer.hpp"

namespace flare::net {

class CurlTransport {
 public:
  // `finished` receives each transfer that finished (state Finished, result set).
  CurlTransport(int epoll_fd, std::deque<Transfer*>& finished, const ClientOptions& options);
  ~CurlTransport();
  CurlTransport(const CurlTransport&) = delete;
  CurlTransport& operator=(const CurlTransport&) = delete;

  // An easy handle for a new slot (throws "out_of_memory"), and its end.
  static CURL* new_easy();
  static void free_easy(CURL* easy);
  // Configures t->easy for t->request and adds it (throws "transport_failed").
  void start(Transfer* t);
  // Removes a running transfer; nothing is reported.
  void cancel(Transfer* t);
  // An epoll event on a descriptor that is not the direct transport's.
  void on_event(int fd, std::uint32_t events);
  // Runs libcurl's timeouts if due, and moves finished transfers to `finished`.
  void run_due();
  // When libcurl's timer is due (time_point::max(): not armed).
  steady::time_point due() const;
  // After success: status and total time into t->response.
  static void fill_response(Transfer* t);
  // New connections the transfer opened.
  static std::uint64_t connections(const Transfer* t);
  static const char* describe(CURLcode code);

 private:
  struct Multi;
  std::unique_ptr<Multi> multi_;
};

}  // namespace flare::net
