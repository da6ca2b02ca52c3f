// A gateway prototype on the emulator's HTTP stack, for bench/gateway/run.sh: every
// request goes to the production upstream, or to the canary for PERCENT% of user ids
// (x-user-id, hashed; random without one), over one keep-alive client per worker
// thread; one log line per request is buffered and written in batches, as nginx's
// access_log with a buffer does.
//   bench_gateway_proxy PORT PRODUCTION_PORT CANARY_PORT PERCENT LOG_FILE
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "emulator/server/http_server.hpp"

namespace {

struct Log {
  std::mutex mu;
  std::string buf;
  FILE* f = nullptr;
  void add(const std::string& line) {
    std::lock_guard<std::mutex> lock(mu);
    buf += line;
    if (buf.size() > 64 * 1024) flush_locked();
  }
  void flush_locked() {
    std::fwrite(buf.data(), 1, buf.size(), f);
    std::fflush(f);
    buf.clear();
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s PORT PRODUCTION_PORT CANARY_PORT PERCENT LOG_FILE\n", argv[0]);
    return 2;
  }
  int port = std::atoi(argv[1]);
  int prod = std::atoi(argv[2]);
  int canary = std::atoi(argv[3]);
  double percent = std::atof(argv[4]);
  static Log log;
  log.f = std::fopen(argv[5], "a");
  if (!log.f) return 1;
  flare::emulator::ConnectionLimits limits;
  limits.workers = 96;
  flare::emulator::HttpServer server(limits);
  server.set_tcp_nodelay(true);
  auto handler = [&](const httplib::Request& req, httplib::Response& res) {
    auto t0 = std::chrono::steady_clock::now();
    std::string user = req.get_header_value("x-user-id");
    bool to_canary;
    if (!user.empty()) {
      to_canary = (std::hash<std::string>{}(user) % 10000) < percent * 100;
    } else {
      thread_local std::mt19937_64 rng(std::random_device{}());
      to_canary = (rng() % 10000) < percent * 100;
    }
    int up = to_canary ? canary : prod;
    thread_local std::unique_ptr<httplib::Client> clients[2];
    auto& c = clients[to_canary ? 1 : 0];
    if (!c) {
      c = std::make_unique<httplib::Client>("127.0.0.1", up);
      c->set_keep_alive(true);
      c->set_tcp_nodelay(true);  // headers and body go out in two writes
    }
    httplib::Headers headers;
    for (const auto& h : req.headers) {
      if (h.first == "Host" || h.first == "Content-Length" || h.first == "Connection" ||
          h.first == "REMOTE_ADDR" || h.first == "REMOTE_PORT" || h.first == "LOCAL_ADDR" ||
          h.first == "LOCAL_PORT")
        continue;
      headers.emplace(h.first, h.second);
    }
    auto r = req.method == "POST" ? c->Post(req.path, headers, req.body,
                                            req.get_header_value("Content-Type").c_str())
                                  : c->Get(req.path, headers);
    if (!r) {
      res.status = 502;
      res.set_content("{\"error\":\"upstream\"}", "application/json");
    } else {
      res.status = r->status;
      res.set_content(r->body, r->get_header_value("Content-Type").c_str());
    }
    double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    log.add(std::string(to_canary ? "canary " : "production ") + std::to_string(res.status) + " " +
            std::to_string(ms) + "\n");
  };
  server.Post(".*", handler);
  server.Get(".*", handler);
  signal(SIGPIPE, SIG_IGN);
  if (!server.bind_to_port("127.0.0.1", port)) {
    std::fprintf(stderr, "port %d is in use\n", port);
    return 1;
  }
  // SIGTERM and SIGINT reach the stopper thread only (blocked everywhere, taken by sigwait).
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread stopper([&] {
    int sig;
    sigwait(&set, &sig);
    server.shutdown();
  });
  server.listen_after_bind();
  stopper.join();
  std::lock_guard<std::mutex> lock(log.mu);
  log.flush_locked();
  return 0;
}
