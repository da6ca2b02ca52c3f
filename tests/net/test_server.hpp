#pragma once
// A real HTTP server on a free loopback port for client tests.
//   GET  /hello        "hello", header X-Test: yes
//   ANY  /echo         body echoed back (httplib drops GET bodies); X-Method,
//                      X-Seen-Header (the request's X-Probe) and X-Content-Length
//                      in the response
//   GET  /slow?ms=N    answers after N ms (returns early when the server stops)
//   GET  /gather?n=N   holds each request until N are in the handler together
//                      (or 3 s passed), then answers
#include <httplib.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <string>
#include <thread>

class TestServer {
 public:
  TestServer();
  ~TestServer();

  std::string url(const std::string& path) const;
  int port() const { return port_; }
  std::size_t distinct_client_ports() const;
  int peak_concurrency() const { return peak_.load(); }

 private:
  void enter();
  void leave();

  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::set<int> client_ports_;
  std::atomic<int> current_{0};
  std::atomic<int> peak_{0};
  bool stopping_ = false;
};

// A loopback port with nothing listening on it.
int closed_port();
