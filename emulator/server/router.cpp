#include "emulator/server/router.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <thread>

#include "emulator/server/api_error.hpp"
#include "emulator/server/http_server.hpp"
#include "emulator/server/state_paths.hpp"

namespace flare::emulator {
namespace {

thread_local bool t_truncate = false;

// Aborts the request's connection: linger 0 turns the close that follows
// into a reset.
void reset_connection() {
  int fd = HttpServer::current_socket();
  if (fd < 0) return;
  linger lg{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  shutdown(fd, SHUT_RDWR);
}

bool authorized(const httplib::Request& req, Auth auth, const std::string& key) {
  // Only the header the route accepts is looked up (each lookup compares
  // header names case-insensitively, a character at a time).
  auto api_key = [&] { return equal_constant_time(req.get_header_value("X-Api-Key"), key); };
  auto bearer = [&] {
    std::string v = req.get_header_value("Authorization");
    return v.starts_with("Bearer ") && equal_constant_time(v.substr(7), key);
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

bool equal_constant_time(const std::string& a, const std::string& b) {
  // Compares every byte of `a` (against `a` itself when the lengths differ),
  // so the time taken says nothing about where a guess goes wrong.
  const std::string& other = a.size() == b.size() ? b : a;
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ other[i]);
  }
  return diff == 0;
}

Router::Router(httplib::Server& server, std::string api_key, Faults& faults, bool log,
               std::string state_dir)
    : server_(server),
      api_key_(std::move(api_key)),
      faults_(faults),
      log_(log),
      state_dir_(std::move(state_dir)) {
  server_.set_payload_max_length(kMaxBody);
  server_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    return refuse_early(req, res) ? httplib::Server::HandlerResponse::Handled
                                  : httplib::Server::HandlerResponse::Unhandled;
  });
  // A client that waits for "100 Continue" before sending its body is
  // answered from the headers alone when the request cannot succeed.
  server_.set_expect_100_continue_handler(
      [this](const httplib::Request& req, httplib::Response& res) {
        return refuse_early(req, res) ? res.status : 100;
      });
}

void Router::log(const httplib::Request& req, const httplib::Response& res, double ms) const {
  if (log_) {
    std::fprintf(stderr, "%s %s -> %d (%.1f ms)\n", req.method.c_str(), req.path.c_str(),
                 res.status, ms);
  }
}

bool Router::refuse_early(const httplib::Request& req, httplib::Response& res) const {
  const Route* route = nullptr;
  std::string allowed;
  for (const auto& r : routes_) {
    if (!r.pattern.matches(req.path)) continue;
    if (r.method == req.method) {
      route = &r;
      break;
    }
    allowed += (allowed.empty() ? "" : ", ") + r.method;
  }
  const bool has_body = req.has_header("Content-Length") || req.has_header("Transfer-Encoding");
  auto refuse = [&](int status, const std::string& code, const std::string& message) {
    send_error(res, status, code, message);
    // The body, if any, is never read: the connection cannot carry another request.
    if (has_body) HttpServer::close_after_response();
    log(req, res, 0);
    return true;
  };
  if (!route && allowed.empty()) {
    return refuse(404, "NOT_FOUND", "no route for " + req.method + " " + req.path);
  }
  if (!route) {
    res.set_header("Allow", allowed);
    return refuse(
        405, "METHOD_NOT_ALLOWED",
        "method " + req.method + " is not allowed on " + req.path + " (allowed: " + allowed + ")");
  }
  if (!authorized(req, route->auth, api_key_)) {
    return refuse(401, "UNAUTHENTICATED",
                  std::string("missing or invalid API key: ") + auth_hint(route->auth));
  }
  unsigned long long length = 0;
  if (req.has_header("Content-Length")) {
    const std::string text = req.get_header_value("Content-Length");
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), length);
    if (ec != std::errc() || end != text.data() + text.size()) {
      return refuse(400, "INVALID_ARGUMENT",
                    "header Content-Length '" + text + "' is not a number");
    }
    if (length > route->max_body) {
      return refuse(413, "INVALID_ARGUMENT",
                    "request body of " + std::to_string(length) + " bytes exceeds the limit of " +
                        std::to_string(route->max_body) + " bytes for " + req.method + " " +
                        req.path);
    }
  }
  // httplib reads a form-encoded body only up to 8 KB (answering a bare 413)
  // and takes a multipart body apart; these routes read JSON.
  const std::string type = req.get_header_value("Content-Type");
  const bool form = type.starts_with("application/x-www-form-urlencoded");
  const bool chunked =
      req.get_header_value("Transfer-Encoding").find("chunked") != std::string::npos;
  if ((form && (chunked || length > 8192)) || type.starts_with("multipart/")) {
    return refuse(415, "INVALID_ARGUMENT",
                  "the request body is labelled " + type.substr(0, type.find(';')) +
                      " (curl -d and -F do that); this server reads JSON: send it with "
                      "'Content-Type: application/json'");
  }
  return false;
}

Router::Handler Router::wrap(size_t max_body, Handler h) {
  return [this, max_body, h = std::move(h)](const httplib::Request& req, httplib::Response& res) {
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
            reset_connection();
            throw ApiError(500, "INTERNAL", "injected fault: connection reset");
          case FaultKind::Delay:
            std::this_thread::sleep_for(std::chrono::milliseconds(fault->delay_ms));
            break;
          case FaultKind::Truncate:
            t_truncate = true;
            break;
        }
      }
      if (req.body.size() > max_body) {  // a chunked body has no length to check before
        throw ApiError(413, "INVALID_ARGUMENT",
                       "request body of " + std::to_string(req.body.size()) +
                           " bytes exceeds the limit of " + std::to_string(max_body) +
                           " bytes for " + req.method + " " + req.path);
      }
      h(req, res);
      if (t_truncate) {
        t_truncate = false;
        truncate_body(res);
      }
    } catch (const ApiError& e) {
      send_error(res, e.status, e.code, hide_state_dir(state_dir_, e.what()), e.retry_after_s);
    } catch (const std::invalid_argument& e) {
      send_error(res, 400, "INVALID_ARGUMENT", hide_state_dir(state_dir_, e.what()));
    } catch (const std::exception& e) {
      send_error(res, 500, "INTERNAL", hide_state_dir(state_dir_, e.what()));
    } catch (...) {
      send_error(res, 500, "INTERNAL", "unknown error");
    }
    log(req, res,
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  };
}

Router::PathPattern::PathPattern(const std::string& pattern) {
  // A segment is ([^/]+), or ([^/:]+) where a ":verb" suffix may follow it.
  static constexpr std::string_view kSegment = "([^/]+)", kNameSegment = "([^/:]+)", kRest = "(.+)";
  std::string text = pattern;
  if (text.ends_with(kRest)) {
    rest_ = true;
    text.resize(text.size() - kRest.size());
  }
  size_t from = 0;
  for (;;) {
    size_t plain = text.find(kSegment, from), name = text.find(kNameSegment, from);
    size_t at = std::min(plain, name);
    if (at == std::string::npos) break;
    literals_.push_back(text.substr(from, at - from));
    bool is_name = at == name;
    stops_.push_back(is_name ? "/:" : "/");
    from = at + (is_name ? kNameSegment.size() : kSegment.size());
  }
  literals_.push_back(text.substr(from));
  for (size_t i = 0; i < literals_.size(); ++i) {
    const std::string& l = literals_[i];
    bool follows_ok = i == 0 || l.empty() || l[0] == '/' || (l[0] == ':' && stops_[i - 1] == "/:");
    if (l.find_first_of("()[]*+?\\|^$.") != std::string::npos || !follows_ok) {
      throw std::logic_error("route pattern '" + pattern +
                             "' is not literal text with ([^/]+) or ([^/:]+) segments and an "
                             "(.+) end");
    }
  }
}

bool Router::PathPattern::matches(std::string_view path) const {
  for (size_t i = 0; i < literals_.size(); ++i) {
    if (i > 0) {  // one non-empty segment, up to the next character that ends it
      size_t end = std::min(path.find_first_of(stops_[i - 1]), path.size());
      if (end == 0) return false;
      path.remove_prefix(end);
    }
    if (!path.starts_with(literals_[i])) return false;
    path.remove_prefix(literals_[i].size());
  }
  return rest_ ? !path.empty() : path.empty();
}

void Router::add(const std::string& method, const std::string& pattern, Auth auth,
                 size_t max_body) {
  routes_.push_back({method, PathPattern(pattern), auth, max_body});
}

void Router::get(const std::string& p, Auth a, Handler h) {
  add("GET", p, a, static_cast<size_t>(BodyLimit::Control));
  server_.Get(p, wrap(static_cast<size_t>(BodyLimit::Control), std::move(h)));
}
void Router::post(const std::string& p, Auth a, Handler h, BodyLimit limit) {
  add("POST", p, a, static_cast<size_t>(limit));
  server_.Post(p, wrap(static_cast<size_t>(limit), std::move(h)));
}
void Router::patch(const std::string& p, Auth a, Handler h) {
  add("PATCH", p, a, static_cast<size_t>(BodyLimit::Control));
  server_.Patch(p, wrap(static_cast<size_t>(BodyLimit::Control), std::move(h)));
}
void Router::put(const std::string& p, Auth a, Handler h) {  // uploads: a model's files
  add("PUT", p, a, static_cast<size_t>(BodyLimit::Training));
  server_.Put(p, wrap(static_cast<size_t>(BodyLimit::Training), std::move(h)));
}
void Router::del(const std::string& p, Auth a, Handler h) {
  add("DELETE", p, a, static_cast<size_t>(BodyLimit::Control));
  server_.Delete(p, wrap(static_cast<size_t>(BodyLimit::Control), std::move(h)));
}

}  // namespace flare::emulator
