#include "raw_server.hpp"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>

namespace {

bool iequals_prefix(std::string_view text, std::string_view prefix) {
  if (text.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    char a = text[i], b = prefix[i];
    if (a >= 'A' && a <= 'Z') a = static_cast<char>(a + 32);
    if (b >= 'A' && b <= 'Z') b = static_cast<char>(b + 32);
    if (a != b) return false;
  }
  return true;
}

// Content-Length of a request head, 0 if none.
std::size_t content_length(std::string_view head) {
  std::size_t pos = 0;
  while ((pos = head.find("\r\n", pos)) != std::string_view::npos) {
    pos += 2;
    std::string_view line = head.substr(pos);
    if (iequals_prefix(line, "content-length:")) {
      std::size_t n = 0;
      for (char c : line.substr(15)) {
        if (c == ' ') continue;
        if (c < '0' || c > '9') break;
        n = n * 10 + static_cast<std::size_t>(c - '0');
      }
      return n;
    }
  }
  return 0;
}

}  // namespace

std::optional<std::string> RawConn::read_request() {
  char buf[65536];
  for (;;) {
    auto end = buffer_.find("\r\n\r\n");
    if (end != std::string::npos) {
      std::size_t total = end + 4 + content_length(std::string_view(buffer_).substr(0, end + 2));
      if (buffer_.size() >= total) {
        std::string request = buffer_.substr(0, total);
        buffer_.erase(0, total);
        server_.record(request);
        return request;
      }
    }
    if (server_.stopping()) return std::nullopt;
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return std::nullopt;
    buffer_.append(buf, static_cast<std::size_t>(n));
  }
}

std::size_t RawConn::drain(int ms) {
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  std::size_t total = buffer_.size();
  buffer_.clear();
  char buf[65536];
  while (!server_.stopping() && std::chrono::steady_clock::now() < until) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 20) <= 0) continue;
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) break;
    total += static_cast<std::size_t>(n);
  }
  return total;
}

bool RawConn::send(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

bool RawConn::send_slowly(std::string_view bytes, std::size_t piece, int delay_ms) {
  while (!bytes.empty()) {
    std::size_t k = std::min(piece, bytes.size());
    if (!send(bytes.substr(0, k))) return false;
    bytes.remove_prefix(k);
    if (!bytes.empty() && !server_.sleep_ms(delay_ms)) return false;
  }
  return true;
}

bool RawConn::pause(int ms) {
  return server_.sleep_ms(ms);
}

void RawConn::close() {
  shutdown(fd_, SHUT_RDWR);
}

bool RawConn::wait_peer_close(int ms) {
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  char buf[4096];
  while (!server_.stopping() && std::chrono::steady_clock::now() < until) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 20) <= 0) continue;
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return true;
    buffer_.append(buf, static_cast<std::size_t>(n));
  }
  return false;
}

RawServer::RawServer(Handler handler, Options options) : handler_(std::move(handler)) {
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw std::runtime_error("socket failed");
  int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(listen_fd_, options.backlog) != 0)
    throw std::runtime_error("bind/listen failed");
  socklen_t len = sizeof addr;
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this, options] { accept_loop(options); });
}

RawServer::~RawServer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    for (int fd : open_fds_) shutdown(fd, SHUT_RDWR);
  }
  changed_.notify_all();
  shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
  acceptor_.join();
  for (auto& w : workers_) w.join();
  ::close(listen_fd_);
}

std::string RawServer::url(std::string_view path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + std::string(path);
}

std::vector<std::string> RawServer::request_lines() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> lines;
  for (const auto& r : requests_seen_) lines.push_back(r.substr(0, r.find("\r\n")));
  return lines;
}

std::vector<std::string> RawServer::request_texts() const {
  std::lock_guard lock(mutex_);
  return requests_seen_;
}

void RawServer::release_accept() {
  {
    std::lock_guard lock(mutex_);
    released_ = true;
  }
  changed_.notify_all();
}

bool RawServer::sleep_ms(int ms) {
  std::unique_lock lock(mutex_);
  changed_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stopping_.load(); });
  return !stopping_;
}

void RawServer::record(const std::string& request) {
  std::lock_guard lock(mutex_);
  requests_seen_.push_back(request);
  ++requests_;
}

void RawServer::forget(int fd) {
  std::lock_guard lock(mutex_);
  open_fds_.erase(std::find(open_fds_.begin(), open_fds_.end(), fd));
}

void RawServer::accept_loop(Options options) {
  if (options.hold_accept) {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return released_ || stopping_.load(); });
  }
  for (;;) {
    if (options.accept_delay_ms > 0 && !sleep_ms(options.accept_delay_ms)) return;
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stopping_) return;
      continue;
    }
    std::lock_guard lock(mutex_);
    if (stopping_) {
      ::close(fd);
      return;
    }
    open_fds_.push_back(fd);
    int index = connections_++;
    workers_.emplace_back([this, fd, index] {
      RawConn conn(*this, fd, index);
      handler_(conn);
      forget(fd);
      ::close(fd);
    });
  }
}

RawServer::Handler RawServer::answer_each(std::string bytes) {
  return [bytes = std::move(bytes)](RawConn& c) {
    while (c.read_request())
      if (!c.send(bytes)) return;
  };
}

RawServer::Handler RawServer::answer_and_close(std::string bytes) {
  return [bytes = std::move(bytes)](RawConn& c) {
    if (c.read_request()) c.send(bytes);
  };
}
