#pragma once
// cpp-httplib's server with the connection handling a hostile client cannot
// exhaust. httplib hands each accepted socket to a worker that then waits on
// it for as long as the client likes (its timeout is per read), so a few
// hundred clients trickling header bytes hold every worker. Here:
//   - a socket waits for its request headers in one epoll thread (the
//     waiting room), not in a worker: a worker only gets a request whose
//     headers have arrived, and reads its body against one deadline;
//   - headers must arrive within header_timeout_s of the connection (or of
//     the first byte after a keep-alive pause), the body within
//     body_timeout_s; past that the connection is closed;
//   - open connections are capped per client address and in total, and
//     requests waiting for a worker are capped: past a cap the client gets a
//     503 with Retry-After and the connection is closed;
//   - shutdown() closes every waiting connection at once and stops reads and
//     writes in progress within a tenth of a second; only handlers already
//     running are waited for.
#include <httplib.h>

#include <atomic>
#include <memory>
#include <string>

namespace flare::emulator {

struct ConnectionLimits {
  int workers = 128;
  int max_queued = 512;       // requests with complete headers waiting for a worker
  int max_connections = 900;  // open connections in total, below the usual 1024-fd limit
  int max_per_address = 512;  // open connections from one client address
  double header_timeout_s = 10;
  double body_timeout_s = 60;
  double idle_timeout_s = 5;  // keep-alive: an idle connection is closed after this
  double write_timeout_s = 60;
  size_t max_header_bytes = 64 * 1024;
  size_t keep_alive_max_requests = 10000;
};

class HttpServer : public httplib::Server {
 public:
  explicit HttpServer(ConnectionLimits limits = {});
  ~HttpServer() override;

  // Stops listening, closes waiting connections, and returns once every
  // worker is idle.
  void shutdown();

  // For a route handler, on its worker thread: the socket of the request it
  // serves (-1 elsewhere), and a way to close the connection after the
  // response (a request answered before its body was read).
  static int current_socket();
  static void close_after_response();

  struct Impl;

 private:
  bool process_and_close_socket(socket_t sock) override;
  std::unique_ptr<Impl> impl_;
};

}  // namespace flare::emulator
