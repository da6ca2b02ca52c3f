#include "emulator/server/http_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace flare::emulator {
namespace {

double now_mono() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

enum class ConnState { Waiting, Queued, Serving, Draining };

struct Conn {
  int fd = -1;
  std::string peer_ip, local_ip;
  int peer_port = 0, local_port = 0;
  std::string buf;  // bytes received and not yet consumed, from `off`
  size_t off = 0;
  size_t scanned = 0;  // buf[off, scanned) holds no header terminator
  double deadline = 0;
  bool got_bytes = false;  // of the request being waited for
  bool close_after = false;
  size_t served = 0;
  size_t drained = 0;  // bytes discarded after an early answer
  ConnState state = ConnState::Waiting;

  size_t buffered() const { return buf.size() - off; }
  void compact() {
    buf.erase(0, off);
    scanned -= std::min(scanned, off);
    off = 0;
  }
  bool has_headers() {
    size_t from = std::max(off, scanned >= 3 ? scanned - 3 : 0);
    bool found = buf.find("\r\n\r\n", from) != std::string::npos;
    if (!found) scanned = buf.size();
    return found;
  }
};

thread_local Conn* t_conn = nullptr;

void ip_and_port(const sockaddr_storage& a, std::string& ip, int& port) {
  char text[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    auto& in = reinterpret_cast<const sockaddr_in&>(a);
    inet_ntop(AF_INET, &in.sin_addr, text, sizeof text);
    port = ntohs(in.sin_port);
  } else if (a.ss_family == AF_INET6) {
    auto& in6 = reinterpret_cast<const sockaddr_in6&>(a);
    inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof text);
    port = ntohs(in6.sin6_port);
  }
  ip = text;
}

// Waits until `fd` is ready for `events`, in slices so that a shutdown is seen
// within 100 ms; false at `deadline` or on shutdown.
bool wait_ready(int fd, short events, double deadline, const std::atomic<bool>& stopping) {
  for (;;) {
    if (stopping) return false;
    double left = deadline - now_mono();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, static_cast<int>(std::min(left, 0.1) * 1000) + 1);
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

// A canned response for a connection turned away before any handler runs; the
// caller closes it.
void send_and_forget(int fd, int status, const char* reason, const std::string& message,
                     bool retry) {
  std::string body =
      R"({"error":{"code":")" + std::string(status == 503 ? "UNAVAILABLE" : "INVALID_ARGUMENT") +
      R"(","message":")" + message + R"(","status":)" + std::to_string(status) + "}}";
  std::string head = "HTTP/1.1 " + std::to_string(status) + " " + reason +
                     "\r\nContent-Type: application/json\r\nConnection: close\r\n" +
                     (retry ? "Retry-After: 1\r\n" : "") +
                     "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  std::string all = head + body;
  (void)!::send(fd, all.data(), all.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  // The request bytes already here are taken in: closing a socket with unread
  // bytes sends a reset, which can reach the client before it reads the answer.
  ::shutdown(fd, SHUT_WR);
  char sink[16384];
  for (int i = 0; i < 16 && ::recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; ++i) {
  }
}

}  // namespace

// The connection as httplib's request parser sees it: bytes the waiting room
// already received first, then the socket, every read against one deadline.
class ConnStream : public httplib::Stream {
 public:
  ConnStream(Conn& c, double read_deadline, double write_timeout_s,
             const std::atomic<bool>& stopping)
      : c_(c),
        read_deadline_(read_deadline),
        write_timeout_s_(write_timeout_s),
        stopping_(stopping) {}

  bool is_readable() const override {
    return c_.buffered() > 0 || wait_ready(c_.fd, POLLIN, read_deadline_, stopping_);
  }
  bool is_writable() const override {
    if (!wait_ready(c_.fd, POLLOUT, now_mono() + write_timeout_s_, stopping_)) return false;
    // A client that has gone away reads as end of stream: stop streaming to it.
    pollfd p{c_.fd, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return true;
    char b;
    return ::recv(c_.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) != 0;
  }
  ssize_t read(char* ptr, size_t size) override {
    if (c_.buffered() > 0) {
      size_t n = std::min(size, c_.buffered());
      std::memcpy(ptr, c_.buf.data() + c_.off, n);
      c_.off += n;
      if (c_.off == c_.buf.size()) {
        c_.buf.clear();
        c_.off = c_.scanned = 0;
      }
      return static_cast<ssize_t>(n);
    }
    for (;;) {
      ssize_t n = ::recv(c_.fd, ptr, size, MSG_DONTWAIT);
      if (n >= 0) return n;
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
      if (!wait_ready(c_.fd, POLLIN, read_deadline_, stopping_)) return -1;
    }
  }
  ssize_t write(const char* ptr, size_t size) override {
    double deadline = now_mono() + write_timeout_s_;
    for (;;) {
      ssize_t n = ::send(c_.fd, ptr, size, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n >= 0) return n;
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
      if (!wait_ready(c_.fd, POLLOUT, deadline, stopping_)) return -1;
    }
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = c_.peer_ip;
    port = c_.peer_port;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    ip = c_.local_ip;
    port = c_.local_port;
  }
  // httplib only compares this with FD_SETSIZE (its select() limit, which
  // this stream does not use): a higher descriptor must not turn into a 500.
  socket_t socket() const override { return c_.fd < FD_SETSIZE ? c_.fd : -1; }

 private:
  Conn& c_;
  double read_deadline_;
  double write_timeout_s_;
  const std::atomic<bool>& stopping_;
};

struct HttpServer::Impl {
  HttpServer& srv;
  ConnectionLimits lim;
  std::atomic<bool> stopping{false};
  bool shut = false;
  int epfd = -1, wakefd = -1;

  std::mutex mu;  // guards everything below
  std::unordered_map<int, std::unique_ptr<Conn>> conns;
  std::map<std::string, int> per_address;
  std::deque<Conn*> queue;
  std::condition_variable queue_cv;

  std::thread waiting_room;
  std::vector<std::thread> workers;

  Impl(HttpServer& s, ConnectionLimits l) : srv(s), lim(l) {
    epfd = ::epoll_create1(EPOLL_CLOEXEC);
    wakefd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = wakefd;
    ::epoll_ctl(epfd, EPOLL_CTL_ADD, wakefd, &ev);
    waiting_room = std::thread([this] { run_waiting_room(); });
    for (int i = 0; i < lim.workers; ++i) workers.emplace_back([this] { run_worker(); });
  }

  ~Impl() {
    shutdown();
    ::close(epfd);
    ::close(wakefd);
  }

  // Called with mu held.
  void close_locked(Conn* c) {
    ::epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, nullptr);
    ::close(c->fd);
    auto it = per_address.find(c->peer_ip);
    if (it != per_address.end() && --it->second == 0) per_address.erase(it);
    conns.erase(c->fd);
  }

  void admit(int fd) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    int yes = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
    auto c = std::make_unique<Conn>();
    c->fd = fd;
    sockaddr_storage peer{}, local{};
    socklen_t pl = sizeof peer, ll = sizeof local;
    ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ll);
    ip_and_port(peer, c->peer_ip, c->peer_port);
    ip_and_port(local, c->local_ip, c->local_port);
    c->deadline = now_mono() + lim.header_timeout_s;
    c->got_bytes = true;  // a new connection's headers are timed from its start

    std::lock_guard lock(mu);
    std::string refusal;
    if (stopping) {
      refusal = "the server is shutting down";
    } else if (static_cast<int>(conns.size()) >= lim.max_connections) {
      refusal = "the server has " + std::to_string(conns.size()) +
                " open connections, its limit; retry shortly";
    } else if (per_address[c->peer_ip] >= lim.max_per_address) {
      refusal = "too many open connections from " + c->peer_ip + " (limit " +
                std::to_string(lim.max_per_address) + "); retry shortly";
    }
    if (!refusal.empty()) {
      if (per_address[c->peer_ip] == 0) per_address.erase(c->peer_ip);
      send_and_forget(fd, 503, "Service Unavailable", refusal, true);
      ::close(fd);
      return;
    }
    ++per_address[c->peer_ip];
    Conn* raw = c.get();
    conns[fd] = std::move(c);
    watch_locked(raw);
  }

  void watch_locked(Conn* c, ConnState state = ConnState::Waiting) {
    c->state = state;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.fd = c->fd;
    ::epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
  }

  // Called with mu held: the connection's headers are in; a worker takes it,
  // or it is turned away when too many requests already wait.
  void dispatch_locked(Conn* c) {
    ::epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, nullptr);
    if (static_cast<int>(queue.size()) >= lim.max_queued) {
      send_and_forget(c->fd, 503, "Service Unavailable",
                      "the server is busy (" + std::to_string(queue.size()) +
                          " requests wait for a worker); retry shortly",
                      true);
      close_locked(c);
      return;
    }
    c->state = ConnState::Queued;
    queue.push_back(c);
    queue_cv.notify_one();
  }

  void on_readable(Conn* c) {
    char chunk[16384];
    bool ended = false;
    for (;;) {
      ssize_t n = ::recv(c->fd, chunk, sizeof chunk, MSG_DONTWAIT);
      if (n > 0) {
        if (c->state == ConnState::Draining) {  // discarded, up to 1 MiB
          c->drained += static_cast<size_t>(n);
          if (c->drained > (1u << 20)) {
            ended = true;
            break;
          }
          continue;
        }
        if (!c->got_bytes) {
          c->got_bytes = true;
          c->deadline = now_mono() + lim.header_timeout_s;
        }
        c->buf.append(chunk, static_cast<size_t>(n));
        if (c->buffered() > lim.max_header_bytes + sizeof chunk) break;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      ended = true;  // end of stream or an error
      break;
    }
    // A client may send its request and then close its side: it still gets the answer.
    if (c->state != ConnState::Draining && c->has_headers()) {
      dispatch_locked(c);
    } else if (ended || c->state == ConnState::Draining) {
      if (ended) close_locked(c);
    } else if (c->buffered() > lim.max_header_bytes) {
      send_and_forget(c->fd, 431, "Request Header Fields Too Large",
                      "request headers exceed " + std::to_string(lim.max_header_bytes) + " bytes",
                      false);
      close_locked(c);
    }
  }

  void sweep_locked(double now) {
    std::vector<Conn*> expired;
    for (auto& [fd, c] : conns) {
      if ((c->state == ConnState::Waiting || c->state == ConnState::Draining) &&
          now >= c->deadline) {
        expired.push_back(c.get());
      }
    }
    for (Conn* c : expired) {
      // An idle keep-alive connection whose next request arrived as its time ran
      // out is served (epoll reports it next), not closed on the request unread.
      char b;
      if (c->state == ConnState::Waiting && !c->got_bytes &&
          ::recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
        continue;
      }
      if (c->state == ConnState::Waiting && c->buffered() > 0) {
        send_and_forget(c->fd, 408, "Request Timeout",
                        "the request headers did not arrive within " +
                            std::to_string(static_cast<int>(lim.header_timeout_s)) + " s",
                        false);
      }
      close_locked(c);
    }
  }

  void run_waiting_room() {
    epoll_event events[128];
    double next_sweep = now_mono();
    while (!stopping) {
      int n = ::epoll_wait(epfd, events, 128, 100);
      std::lock_guard lock(mu);
      for (int i = 0; i < n; ++i) {
        int fd = events[i].data.fd;
        if (fd == wakefd) {
          uint64_t v;
          (void)!::read(wakefd, &v, sizeof v);
          continue;
        }
        auto it = conns.find(fd);
        if (it == conns.end()) continue;
        Conn* c = it->second.get();
        if (c->state == ConnState::Waiting || c->state == ConnState::Draining) on_readable(c);
      }
      double now = now_mono();
      if (now >= next_sweep) {
        sweep_locked(now);
        next_sweep = now + 0.1;
      }
    }
  }

  void run_worker() {
    for (;;) {
      Conn* c = nullptr;
      {
        std::unique_lock lock(mu);
        queue_cv.wait(lock, [this] { return stopping || !queue.empty(); });
        if (stopping) return;
        c = queue.front();
        queue.pop_front();
        c->state = ConnState::Serving;
      }
      serve(c);
    }
  }

  void serve(Conn* c) {
    for (;;) {
      bool last = c->served + 1 >= lim.keep_alive_max_requests;
      bool closed = false;
      bool ok;
      {
        ConnStream strm(*c, now_mono() + lim.body_timeout_s, lim.write_timeout_s, stopping);
        t_conn = c;
        ok = srv.process_request(strm, last, closed, nullptr);
        t_conn = nullptr;
      }
      ++c->served;
      c->compact();
      // A client that sent its next request already (or pipelined it) is
      // served on this worker without a trip through the waiting room.
      bool eof = false;
      if (ok && !closed && !last && !c->close_after) eof = !take_available(c) && !c->has_headers();
      std::lock_guard lock(mu);
      if (c->close_after && ok && !stopping) {
        // Answered before its body was read: stop sending, take in what the
        // client still sends for a moment (so it reads the answer rather than
        // a reset), then close.
        ::shutdown(c->fd, SHUT_WR);
        c->deadline = now_mono() + 1.0;
        watch_locked(c, ConnState::Draining);
        return;
      }
      if (!ok || closed || last || eof || stopping) {
        close_locked(c);
        return;
      }
      if (c->has_headers()) continue;
      c->got_bytes = c->buffered() > 0;
      c->deadline = now_mono() + (c->got_bytes ? lim.header_timeout_s : lim.idle_timeout_s);
      watch_locked(c);  // epoll reports it even while the waiting room is in epoll_wait
      return;
    }
  }

  // Appends what the socket holds now (up to a header's worth), without
  // waiting; false at end of stream.
  bool take_available(Conn* c) const {
    char chunk[16384];
    while (c->buffered() <= lim.max_header_bytes) {
      ssize_t n = ::recv(c->fd, chunk, sizeof chunk, MSG_DONTWAIT);
      if (n > 0) {
        c->buf.append(chunk, static_cast<size_t>(n));
        if (n < static_cast<ssize_t>(sizeof chunk)) return true;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
    return true;
  }

  void wake() {
    uint64_t one = 1;
    (void)!::write(wakefd, &one, sizeof one);
  }

  void shutdown() {
    if (shut) return;
    shut = true;
    stopping = true;
    srv.stop();
    wake();
    if (waiting_room.joinable()) waiting_room.join();
    {
      std::lock_guard lock(mu);
      queue.clear();
      std::vector<Conn*> idle;
      for (auto& [fd, c] : conns) {
        if (c->state != ConnState::Serving) idle.push_back(c.get());
      }
      for (Conn* c : idle) close_locked(c);
    }
    queue_cv.notify_all();
    for (auto& w : workers) w.join();
    workers.clear();
  }
};

namespace {

// Runs each accepted socket's admission on the accepting thread: the waiting
// room takes it from there, so accepting never waits for a worker.
class AdmitInline : public httplib::TaskQueue {
 public:
  void enqueue(std::function<void()> fn) override { fn(); }
  void shutdown() override {}
};

}  // namespace

HttpServer::HttpServer(ConnectionLimits limits) : impl_(std::make_unique<Impl>(*this, limits)) {
  new_task_queue = [] { return new AdmitInline(); };
  // What the Keep-Alive header of each answer announces.
  set_keep_alive_max_count(limits.keep_alive_max_requests);
  set_keep_alive_timeout(static_cast<time_t>(limits.idle_timeout_s));
}

HttpServer::~HttpServer() {
  impl_->shutdown();
}

void HttpServer::shutdown() {
  impl_->shutdown();
}

bool HttpServer::process_and_close_socket(socket_t sock) {
  impl_->admit(sock);
  return true;
}

int HttpServer::current_socket() {
  return t_conn ? t_conn->fd : -1;
}

void HttpServer::close_after_response() {
  if (t_conn) t_conn->close_after = true;
}

}  // namespace flare::emulator
