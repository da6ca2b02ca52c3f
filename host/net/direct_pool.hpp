#pragma once
// The direct transport's state, shared by direct_transport.cpp (pool,
// ramp-up, deadlines) and direct_connection.cpp (one connection's I/O).
// Internal to host/net.
#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>
#include <vector>

#include "net/direct_transport.hpp"
#include "net/http1_parser.hpp"

namespace flare::net {

// A plain-HTTP/1.1 keep-alive connection of flare's own (no libcurl), for
// http:// URLs to an IP address when no proxy is configured: one request at a
// time, the response read with Content-Length, chunked coding or until close.
struct DirectConn {
  int fd = -1;
  std::string key;
  std::uint32_t events = 0;  // registered in epoll
  bool connecting = false;
  bool reused = false;   // served a response before this one
  bool opening = false;  // counted in Host::opening (the server may not have it yet)
  std::chrono::steady_clock::time_point sent_at;  // when the request was all out
  // Idle past this, the server may close it as a request goes out: not reused.
  std::chrono::steady_clock::time_point reuse_before = std::chrono::steady_clock::time_point::max();
  Transfer* t = nullptr;
  std::string out;  // request bytes
  std::size_t out_off = 0;
  std::string in;  // received, not yet parsed
  std::size_t in_off = 0;
  ResponseParser parser;
  bool got_bytes = false;
};

struct DirectTransport::Pool {
  Pool(int epoll, std::deque<Transfer*>& done) : epoll_fd(epoll), finished(done) {}
  int epoll_fd;
  std::deque<Transfer*>& finished;  // the client's: transfers whose callback is due

  std::vector<DirectConn*> direct_by_fd;  // fd -> its connection
  // Per "host:port": idle keep-alive connections, the new connections the
  // server may not have accepted yet, and the transfers waiting for one of
  // them. New connections open a few at a time: a burst of connects overflows
  // a small listen backlog (httplib's is 5), and a connection whose handshake
  // the server dropped looks established here while TCP retransmits for
  // seconds. A new connection counts as accepted once the server's TCP has
  // acknowledged some of the request, or the server answered.
  struct Host {
    std::vector<DirectConn*> idle;
    std::vector<DirectConn*> opening;
    std::deque<Transfer*> waiting;
  };
  static constexpr std::size_t kMaxOpening = 4;
  static constexpr auto kStuckAfter = std::chrono::seconds(1);
  static constexpr int kMaxReconnects = 3;
  std::unordered_map<std::string, Host> hosts;
  std::size_t idle_count = 0;
  std::size_t opening_total = 0;  // over all hosts
  std::size_t waiting_total = 0;
  steady::time_point next_stuck_check = steady::time_point::min();
  std::vector<Transfer*> direct_running;                           // for their deadlines
  steady::time_point direct_next_due = steady::time_point::min();  // see direct_timeouts
  bool direct_enabled = true;      // false: every request goes through libcurl
  bool connection_limits = false;  // max_host/max_total set: libcurl enforces them
  // A proxy variable was set when the client was made: libcurl applies it
  // (and no_proxy). flare never changes its environment while it runs.
  bool proxy_env = false;
  long max_idle = 256;

  static bool proxy_configured();

  // Whether `t` can go direct: http:// to an IP literal, no credentials, no
  // proxy, no limits to enforce, a path libcurl would send as it is, and no
  // header that changes the framing. Fills t->key and t->addr.
  bool direct_eligible(Transfer* t);

  void direct_register(DirectConn* c, std::uint32_t events);

  // Closes a connection that is neither idle nor carrying a transfer.
  void direct_close(DirectConn* c, bool dispatch = true);

  // The server has the connection (or it is gone): it no longer counts as opening.
  void settle(DirectConn* c);

  // Settles the opening connections whose request the server's TCP has
  // acknowledged; restarts transfers whose connection was never accepted.
  void check_opening(Host& h, bool restart_stuck);

  void check_all_opening();

  // Gives waiting transfers the connections that became available.
  void dispatch_waiting(const std::string& key);

  void take_from_idle(DirectConn* c);

  void drop_expired_idle(Host& h);

  void stop_waiting(Transfer* t);

  // Starts (or restarts, after a stale keep-alive connection) a direct transfer.
  void direct_start(Transfer* t);

  std::string connect_message(const Transfer* t, int err) const;

  // Sends what is left of the request; true when all of it is out and c is
  // still this transfer's (false: waiting for the socket, failed, or retried).
  bool direct_send(DirectConn* c);

  // A reused keep-alive connection that the server closed before answering:
  // the request goes again on a fresh one (as libcurl does), once.
  bool retry_stale(DirectConn* c);

  void direct_event(DirectConn* c, std::uint32_t events);

  void direct_read(DirectConn* c);

  // Parses what arrived; false when the transfer ended (finished or failed).
  bool direct_parse(DirectConn* c);

  void remove_running(Transfer* t);

  // The response is complete: the connection goes back to the pool (or is closed).
  void direct_done(DirectConn* c);

  void direct_fail(Transfer* t, CURLcode code, const std::string& detail);

  void direct_finished(Transfer* t);

  // Fails the direct transfers whose time is up; returns the next deadline.
  steady::time_point direct_timeouts();

  void direct_cancel(Transfer* t);

  // Was HttpClient::start's part for direct transfers.
  void start(Transfer* t);

  steady::time_point service();

  void close_all();
};

}  // namespace flare::net
