#pragma once
// flare's own HTTP/1.1 transport, for plain http:// to an IP address: no
// libcurl. Non-blocking sockets on the client's epoll set, one request at a
// time per connection, a keep-alive pool per "host:port", new connections
// opened a few at a time (a burst of connects overflows a small listen
// backlog), a request the server's TCP never acknowledged sent again on a new
// connection after a second, a reused connection the server had closed while
// idle replaced once. Error codes and messages as libcurl's (CURLcode).
#include <cstdint>
#include <deque>
#include <memory>

#include "net/transfer.hpp"

namespace flare::net {

class DirectTransport {
 public:
  // `finished` receives each transfer that finished (state Finished, result set).
  DirectTransport(int epoll_fd, std::deque<Transfer*>& finished, const ClientOptions& options);
  ~DirectTransport();
  DirectTransport(const DirectTransport&) = delete;
  DirectTransport& operator=(const DirectTransport&) = delete;

  // Whether `t` can go direct: http:// to an IP literal, no credentials, no
  // proxy, no connection limits, not HEAD, no framing header of the caller's.
  // Fills t->key and t->addr. Always false with FLARE_HTTP_LIBCURL=1.
  bool eligible(Transfer* t);
  // Starts an eligible transfer (its state is set by the caller); a failure
  // is reported through `finished`, as with libcurl.
  void start(Transfer* t);
  // Aborts a running transfer (its connection is closed); nothing is reported.
  void cancel(Transfer* t);
  // Handles an epoll event if `fd` is one of its connections.
  bool on_event(int fd, std::uint32_t events);
  // Fails the transfers whose time is up and looks after connections being
  // opened; returns when it next needs to run (time_point::max(): not before an event).
  steady::time_point service();
  // Only the deadlines (after a round of events).
  void timeouts();
  // Closes every connection (the client is going away).
  void close_all();

 private:
  struct Pool;
  std::unique_ptr<Pool> pool_;
};

}  // namespace flare::net
