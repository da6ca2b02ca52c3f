#pragma once
// Route registration with the emulator's common behaviour: injected faults,
// authentication, request logging, and every exception turned into a JSON
// error response.
#include <httplib.h>

#include <functional>
#include <string>

#include "emulator/server/faults.hpp"

namespace flare::emulator {

enum class Auth {
  ApiKey,  // control plane: X-Api-Key
  Bearer,  // inference and hotload: Authorization: Bearer
  Any,     // either one
};

class Router {
 public:
  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;
  Router(httplib::Server& server, std::string api_key, Faults& faults, bool log);

  void get(const std::string& pattern, Auth auth, Handler h);
  void post(const std::string& pattern, Auth auth, Handler h);
  void patch(const std::string& pattern, Auth auth, Handler h);
  void put(const std::string& pattern, Auth auth, Handler h);
  void del(const std::string& pattern, Auth auth, Handler h);

 private:
  Handler wrap(Auth auth, Handler h);
  httplib::Server& server_;
  std::string api_key_;
  Faults& faults_;
  bool log_;
};

// A streaming handler calls this once: true when an injected "truncate" fault
// applies to this request, so it must cut its stream short (the router
// truncates plain bodies by itself).
bool take_truncate_fault();

}  // namespace flare::emulator
