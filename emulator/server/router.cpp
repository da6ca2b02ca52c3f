#include "emulator/server/router.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "emulator/server/api_error.hpp"

namespace flare::emulator {
namespace {

thread_local bool t_truncate = false;

int port_of(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(a).sin_port);
  if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(a).sin6_port);
  return -1;
}

// httplib does not hand the socket to handlers; find it by its two ports and
// abort it: linger 0 turns the close httplib does next into a reset.
void reset_connection(const httplib::Request& req) {
  for (int fd = 3; fd < 4096; ++fd) {
    sockaddr_storage local{}, peer{};
    socklen_t ll = sizeof local, pl = sizeof peer;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ll) != 0) continue;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0) continue;
    if (port_of(local) != req.local_port || port_of(peer) != req.remote_port) continue;
    linger lg{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    shutdown(fd, SHUT_RDWR);
    return;
  }
}

bool authorized(const httplib::Request& req, Auth auth, const std::string& key) {
  // Only the header the route accepts is looked up (each lookup compares
  // header names case-insensitively, a character at a time).
  auto api_key = [&] { return req.get_header_value("X-Api-Key") == key; };
  auto bearer = [&] {
    std::string v = req.get_header_value("Authorization");
    return v.size() == key.size() + 7 && v.starts_with("Bearer ") && v.ends_with(key);
  };
  switch (auth) {
    case Auth::ApiKey:
      return api_key();
    case Auth::Bearer:
      return bearer();
    case Auth::Any:
      return api_key() || bearer();
  }
  return false;
}

const char* auth_hint(Auth auth) {
  switch (auth) {
    case Auth::ApiKey:
      return "this route needs the header 'X-Api-Key: <key>'";
    case Auth::Bearer:
      return "this route needs the header 'Authorization: Bearer <key>'";
    case Auth::Any:
      return "this route needs 'X-Api-Key: <key>' or 'Authorization: Bearer <key>'";
  }
  return "";
}

// Sends only the first half of a plain body while announcing its full length.
void truncate_body(httplib::Response& res) {
  auto body = std::make_shared<std::string>(std::move(res.body));
  res.body.clear();
  std::string type = res.get_header_value("Content-Type");
  if (type.empty()) type = "application/json";
  size_t full = body->size();
  res.set_content_provider(full, type, [body](size_t offset, size_t, httplib::DataSink& sink) {
    if (offset == 0 && body->size() > 1) sink.write(body->data(), body->size() / 2);
    return false;
  });
}

}  // namespace

bool take_truncate_fault() {
  bool t = t_truncate;
  t_truncate = false;
  return t;
}

Router::Router(httplib::Server& server, std::string api_key, Faults& faults, bool log)
    : server_(server), api_key_(std::move(api_key)), faults_(faults), log_(log) {}

Router::Handler Router::wrap(Auth auth, Handler h) {
  return [this, auth, h = std::move(h)](const httplib::Request& req, httplib::Response& res) {
    auto t0 = std::chrono::steady_clock::now();
    t_truncate = false;
    if (auto rid = req.headers.find("x-request-id"); rid != req.headers.end())
      res.set_header("x-request-id", rid->second);
    try {
      std::optional<FaultHit> fault;
      if (req.path.rfind("/admin/", 0) != 0) fault = faults_.draw(req.path);
      if (fault) {
        switch (fault->kind) {
          case FaultKind::Status429:
            throw ApiError(429, "RESOURCE_EXHAUSTED", "injected fault: too many requests",
                           fault->retry_after_s);
          case FaultKind::Status500:
            throw ApiError(500, "INTERNAL", "injected fault: internal error");
          case FaultKind::Status503:
            throw ApiError(503, "UNAVAILABLE", "injected fault: service unavailable",
                           fault->retry_after_s);
          case FaultKind::Reset:
            reset_connection(req);
            throw ApiError(500, "INTERNAL", "injected fault: connection reset");
          case FaultKind::Delay:
            std::this_thread::sleep_for(std::chrono::milliseconds(fault->delay_ms));
            break;
          case FaultKind::Truncate:
            t_truncate = true;
            break;
        }
      }
      if (!authorized(req, auth, api_key_)) {
        throw ApiError(401, "UNAUTHENTICATED",
                       std::string("missing or invalid API key: ") + auth_hint(auth));
      }
      h(req, res);
      if (t_truncate) {
        t_truncate = false;
        truncate_body(res);
      }
    } catch (const ApiError& e) {
      send_error(res, e.status, e.code, e.what(), e.retry_after_s);
    } catch (const std::invalid_argument& e) {
      send_error(res, 400, "INVALID_ARGUMENT", e.what());
    } catch (const std::exception& e) {
      send_error(res, 500, "INTERNAL", e.what());
    } catch (...) {
      send_error(res, 500, "INTERNAL", "unknown error");
    }
    if (log_) {
      double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr, "%s %s -> %d (%.1f ms)\n", req.method.c_str(), req.path.c_str(),
                   res.status, ms);
    }
  };
}

void Router::get(const std::string& p, Auth a, Handler h) {
  server_.Get(p, wrap(a, std::move(h)));
}
void Router::post(const std::string& p, Auth a, Handler h) {
  server_.Post(p, wrap(a, std::move(h)));
}
void Router::patch(const std::string& p, Auth a, Handler h) {
  server_.Patch(p, wrap(a, std::move(h)));
}
void Router::put(const std::string& p, Auth a, Handler h) {
  server_.Put(p, wrap(a, std::move(h)));
}
void Router::del(const std::string& p, Auth a, Handler h) {
  server_.Delete(p, wrap(a, std::move(h)));
}

}  // namespace flare::emulator
