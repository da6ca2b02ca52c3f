#include "emulator/server/state_paths.hpp"

#include <filesystem>

#include "emulator/server/api_error.hpp"

namespace fs = std::filesystem;

namespace flare::emulator {

void check_resource_id(const std::string& field, const std::string& id) {
  if (id.empty() || id.size() > 63) bad_request(field + " must be 1 to 63 characters");
  for (char c : id) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
      bad_request(field + " '" + id + "' may contain only lowercase letters, digits and '-'");
    }
  }
}

std::string inside_state_dir(const std::string& state_dir, const std::string& path,
                             const std::string& what) {
  std::error_code ec;
  // weakly_canonical follows the links of every component that exists, so a
  // link planted anywhere on the way is resolved before the prefix check.
  fs::path resolved = fs::weakly_canonical(fs::path(path), ec);
  std::string r = resolved.string();
  if (ec || r.size() <= state_dir.size() || r.compare(0, state_dir.size(), state_dir) != 0 ||
      r[state_dir.size()] != '/') {
    bad_request(what + " is outside the server's state directory");
  }
  return r;
}

std::string hide_state_dir(const std::string& state_dir, std::string message) {
  if (state_dir.empty()) return message;
  for (size_t at = message.find(state_dir); at != std::string::npos;
       at = message.find(state_dir, at)) {
    message.replace(at, state_dir.size(), "<state dir>");
  }
  return message;
}

}  // namespace flare::emulator
