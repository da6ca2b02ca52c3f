#pragma once
// A raw TCP server on a free loopback port for exact-bytes client tests: each
// accepted connection runs `handler` on its own thread, which reads requests
// and writes whatever bytes the test scripts (or closes, or stalls).
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

class RawServer;

// One accepted connection, as seen by the handler.
class RawConn {
 public:
  RawConn(RawServer& server, int fd, int index) : server_(server), fd_(fd), index_(index) {}
  // The next request (head and Content-Length body), or nullopt when the peer
  // closed, the connection failed or the server is stopping. Counted by the server.
  std::optional<std::string> read_request();
  // Reads whatever arrives until the peer closes (or `ms` passed); the byte count.
  std::size_t drain(int ms);
  bool send(std::string_view bytes);
  // `bytes` in pieces of `piece` bytes, `delay_ms` apart.
  bool send_slowly(std::string_view bytes, std::size_t piece, int delay_ms);
  // Sleeps without reading (less when the server stops); false if it stopped.
  bool pause(int ms);
  // Closes the connection now (the handler may return right after).
  void close();
  // Waits until the peer closed the connection or `ms` passed; true if it closed.
  bool wait_peer_close(int ms);
  int index() const { return index_; }  // 0 for the first connection accepted

 private:
  RawServer& server_;
  int fd_;
  int index_;
  std::string buffer_;
};

class RawServer {
 public:
  using Handler = std::function<void(RawConn&)>;
  struct Options {
    int backlog = 64;
    int accept_delay_ms = 0;   // before each accept
    bool hold_accept = false;  // accept nothing until release_accept()
  };

  explicit RawServer(Handler handler) : RawServer(std::move(handler), Options{}) {}
  RawServer(Handler handler, Options options);
  ~RawServer();
  RawServer(const RawServer&) = delete;
  RawServer& operator=(const RawServer&) = delete;

  // "http://127.0.0.1:<port><path>"
  std::string url(std::string_view path) const;
  int port() const { return port_; }
  int connections() const { return connections_.load(); }
  int requests() const { return requests_.load(); }
  // The request line ("GET /x HTTP/1.1") of every request read, in order.
  std::vector<std::string> request_lines() const;
  // The full text of every request read.
  std::vector<std::string> request_texts() const;
  void release_accept();
  // Sleeps `ms`, or less when the server stops; false if it stopped.
  bool sleep_ms(int ms);
  bool stopping() const { return stopping_.load(); }

  // Handlers: answer every request on the connection with `bytes`.
  static Handler answer_each(std::string bytes);
  // Answer each request with `bytes`, then close the connection.
  static Handler answer_and_close(std::string bytes);

 private:
  friend class RawConn;
  void accept_loop(Options options);
  void record(const std::string& request);
  void forget(int fd);

  Handler handler_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::atomic<int> requests_{0};
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  bool released_ = false;
  std::vector<int> open_fds_;
  std::vector<std::string> requests_seen_;
  std::vector<std::thread> workers_;
  std::thread acceptor_;
};
