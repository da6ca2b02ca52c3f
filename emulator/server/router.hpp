#pragma once
// Route registration with the emulator's common behaviour: authentication and
// body limits checked from the headers before the body is read, then injected
// faults, request logging, and every exception turned into a JSON error
// response.
#include <httplib.h>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "emulator/server/faults.hpp"

namespace flare::emulator {

enum class Auth {
  ApiKey,  // control plane: X-Api-Key
  Bearer,  // inference and hotload: Authorization: Bearer
  Any,     // either one
};

// The largest request body a route takes: control-plane JSON is small,
// sampling requests carry prompts, trainer requests carry token batches and
// uploads (PUT) carry model files.
enum class BodyLimit : size_t {
  Control = 1u << 20,
  Sampling = 16u << 20,
  Training = 64u << 20,
};
inline constexpr size_t kMaxBody = static_cast<size_t>(BodyLimit::Training);

class Router {
 public:
  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;
  // `state_dir` is hidden from error messages.
  Router(httplib::Server& server, std::string api_key, Faults& faults, bool log,
         std::string state_dir);

  void get(const std::string& pattern, Auth auth, Handler h);
  void post(const std::string& pattern, Auth auth, Handler h, BodyLimit limit = BodyLimit::Control);
  void patch(const std::string& pattern, Auth auth, Handler h);
  void put(const std::string& pattern, Auth auth, Handler h);
  void del(const std::string& pattern, Auth auth, Handler h);

 private:
  // A route's path pattern as httplib takes it, literal text with "([^/]+)"
  // for one segment and "(.+)" for the rest of the path at its end (the only
  // forms the routes use), matched without a regex.
  class PathPattern {
   public:
    explicit PathPattern(const std::string& pattern);
    bool matches(std::string_view path) const;

   private:
    std::vector<std::string> literals_;  // around the segments: segments + 1 of them
    std::vector<std::string> stops_;     // per segment, the characters that end it
    bool rest_ = false;                  // ends with "(.+)"
  };
  struct Route {
    std::string method;
    PathPattern pattern;
    Auth auth;
    size_t max_body;
  };
  void add(const std::string& method, const std::string& pattern, Auth auth, size_t max_body);
  Handler wrap(size_t max_body, Handler h);
  // Runs on the headers alone: answers (and returns true) a request with no
  // route, a bad key, or a body over the route's limit, without reading it.
  bool refuse_early(const httplib::Request& req, httplib::Response& res) const;
  void log(const httplib::Request& req, const httplib::Response& res, double ms) const;
  httplib::Server& server_;
  std::string api_key_;
  Faults& faults_;
  bool log_;
  std::string state_dir_;
  std::vector<Route> routes_;
};

// Whether `a` equals `b`, in a time that depends on their lengths only.
bool equal_constant_time(const std::string& a, const std::string& b);

// A streaming handler calls this once: true when an injected "truncate" fault
// applies to this request, so it must cut its stream short (the router
// truncates plain bodies by itself).
bool take_truncate_fault();

}  // namespace flare::emulator
