// The emulator's HTTP server with small limits: a slow client is cut off at
// the header deadline, a full queue answers 503 with Retry-After, the
// per-address cap holds, and shutdown does not wait for slow clients.
#include "emulator/server/http_server.hpp"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

namespace fe = flare::emulator;
using Clock = std::chrono::steady_clock;

namespace {

struct Running {
  fe::HttpServer srv;
  int port = 0;
  std::thread listener;
  explicit Running(fe::ConnectionLimits lim) : srv(lim) {
    srv.Get("/ok", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("ok", "text/plain");
    });
    srv.Get("/slow", [](const httplib::Request&, httplib::Response& res) {
      std::this_thread::sleep_for(std::chrono::milliseconds(600));
      res.set_content("slow", "text/plain");
    });
    port = srv.bind_to_any_port("127.0.0.1");
    REQUIRE(port > 0);
    listener = std::thread([this] { srv.listen_after_bind(); });
    while (!srv.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~Running() {
    srv.shutdown();
    listener.join();
  }
};

int connect_to(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

// Everything the server sends until it closes the connection (or 10 s pass).
std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

std::string get(int port, const std::string& path) {
  int fd = connect_to(port);
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string reply = read_all(fd);
  ::close(fd);
  return reply;
}

}  // namespace

TEST_CASE("http server: a client that never finishes its headers is cut off at the deadline") {
  fe::ConnectionLimits lim;
  lim.header_timeout_s = 0.5;
  lim.workers = 2;
  Running r(lim);
  int fd = connect_to(r.port);
  auto t0 = Clock::now();
  ::send(fd, "GET /ok HTTP/1.1\r\nHost:", 23, MSG_NOSIGNAL);
  std::string reply = read_all(fd);
  double waited = std::chrono::duration<double>(Clock::now() - t0).count();
  ::close(fd);
  CHECK(reply.rfind("HTTP/1.1 408", 0) == 0);
  CHECK(waited < 5);  // generous: the deadline is 0.5 s
  // A silent connection is closed too, without an answer.
  fd = connect_to(r.port);
  CHECK(read_all(fd).empty());
  ::close(fd);
  CHECK(get(r.port, "/ok").find("\r\n\r\nok") != std::string::npos);
}

TEST_CASE("http server: slow clients hold no worker") {
  fe::ConnectionLimits lim;
  lim.workers = 1;
  Running r(lim);
  std::vector<int> slow;
  for (int i = 0; i < 20; ++i) {
    slow.push_back(connect_to(r.port));
    ::send(slow.back(), "GET /ok HTTP/1.1\r\n", 18, MSG_NOSIGNAL);
  }
  // One worker, twenty half-sent requests: a whole request is still served.
  CHECK(get(r.port, "/ok").find("\r\n\r\nok") != std::string::npos);
  for (int fd : slow) ::close(fd);
}

TEST_CASE("http server: a full queue answers 503 with Retry-After") {
  fe::ConnectionLimits lim;
  lim.workers = 1;
  lim.max_queued = 1;
  Running r(lim);
  std::vector<std::future<std::string>> replies;
  for (int i = 0; i < 4; ++i) {
    replies.push_back(std::async(std::launch::async, [&] { return get(r.port, "/slow"); }));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  int ok = 0, busy = 0;
  for (auto& f : replies) {
    std::string reply = f.get();
    if (reply.rfind("HTTP/1.1 200", 0) == 0) ++ok;
    if (reply.rfind("HTTP/1.1 503", 0) == 0) {
      ++busy;
      CHECK(reply.find("Retry-After: 1") != std::string::npos);
    }
  }
  CHECK(ok >= 2);  // the one served and the one queued
  CHECK(busy >= 1);
  CHECK(ok + busy == 4);
}

TEST_CASE("http server: connections over the per-address cap get 503") {
  fe::ConnectionLimits lim;
  lim.max_per_address = 3;
  Running r(lim);
  std::vector<int> held;
  for (int i = 0; i < 3; ++i) held.push_back(connect_to(r.port));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::string reply = get(r.port, "/ok");
  CHECK(reply.rfind("HTTP/1.1 503", 0) == 0);
  CHECK(reply.find("too many open connections from 127.0.0.1") != std::string::npos);
  for (int fd : held) ::close(fd);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(get(r.port, "/ok").find("\r\n\r\nok") != std::string::npos);
}

TEST_CASE("http server: shutdown does not wait for slow clients") {
  std::vector<int> slow;
  double took = 0;
  {
    fe::ConnectionLimits lim;
    lim.workers = 4;
    auto r = std::make_unique<Running>(lim);
    for (int i = 0; i < 50; ++i) {
      slow.push_back(connect_to(r->port));
      ::send(slow.back(), "POST /ok HTTP/1.1\r\nContent-Length: 100\r\n\r\nab", 45, MSG_NOSIGNAL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    auto t0 = Clock::now();
    r.reset();
    took = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  MESSAGE("shutdown with 50 clients in the middle of a body: " << took << " s");
  CHECK(took < 5);  // generous: reads stop within 0.1 s
  for (int fd : slow) ::close(fd);
}
