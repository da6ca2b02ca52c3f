#include "test_server.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>

namespace {

// httplib listens with a backlog of 5, so a burst of 100 connects loses SYNs
// and waits for retransmits. Listening again on the same socket widens it.
void widen_listen_backlog(int port) {
  for (int fd = 0; fd < 1024; ++fd) {
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) continue;
    if (addr.sin_family != AF_INET || ntohs(addr.sin_port) != port) continue;
    int listening = 0;
    socklen_t optlen = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &optlen) == 0 && listening)
      listen(fd, 512);
  }
}

}  // namespace

TestServer::TestServer() {
  // Enough workers for every test's concurrency: httplib keeps a worker per
  // keep-alive connection.
  server_.new_task_queue = [] { return new httplib::ThreadPool(160); };
  server_.set_keep_alive_max_count(100000);
  server_.set_keep_alive_timeout(2);
  server_.set_tcp_nodelay(true);

  server_.Get("/hello", [this](const httplib::Request& req, httplib::Response& res) {
    {
      std::lock_guard lock(mutex_);
      client_ports_.insert(req.remote_port);
    }
    res.set_header("X-Test", "yes");
    res.set_content("hello", "text/plain");
  });
  auto echo = [](const httplib::Request& req, httplib::Response& res) {
    res.set_header("X-Method", req.method);
    res.set_header("X-Seen-Header", req.get_header_value("X-Probe"));
    res.set_header("X-Content-Length", req.get_header_value("Content-Length"));
    res.set_content(req.body, "application/octet-stream");
  };
  server_.Post("/echo", echo);
  server_.Put("/echo", echo);
  server_.Patch("/echo", echo);
  server_.Delete("/echo", echo);
  server_.Get("/echo", echo);
  server_.Get("/slow", [this](const httplib::Request& req, httplib::Response& res) {
    int ms = std::stoi(req.get_param_value("ms"));
    enter();
    {
      std::unique_lock lock(mutex_);
      changed_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stopping_; });
    }
    leave();
    res.set_content("slow", "text/plain");
  });
  server_.Get("/gather", [this](const httplib::Request& req, httplib::Response& res) {
    int n = std::stoi(req.get_param_value("n"));
    enter();
    {
      std::unique_lock lock(mutex_);
      changed_.notify_all();
      changed_.wait_for(lock, std::chrono::seconds(3),
                        [&] { return stopping_ || peak_.load() >= n; });
    }
    leave();
    res.set_content("gathered", "text/plain");
  });

  port_ = server_.bind_to_any_port("127.0.0.1");
  widen_listen_backlog(port_);
  thread_ = std::thread([this] { server_.listen_after_bind(); });
  while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

TestServer::~TestServer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  server_.stop();
  thread_.join();
}

std::string TestServer::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + path;
}

std::size_t TestServer::distinct_client_ports() const {
  std::lock_guard lock(mutex_);
  return client_ports_.size();
}

void TestServer::enter() {
  std::lock_guard lock(mutex_);
  int now = ++current_;
  if (now > peak_) peak_ = now;
  changed_.notify_all();
}

void TestServer::leave() {
  --current_;
}

int closed_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}
