#include "emulator/server/bucket.hpp"

#include <stdexcept>

namespace flare::emulator {

std::string bucket_url(const std::string& dir) {
  std::string url = "file://" + dir;
  if (url.back() != '/') url += '/';
  return url;
}

void check_snapshot_name(const std::string& identity) {
  if (identity.empty()) throw std::invalid_argument("snapshot identity is empty");
  if (identity.size() > 200)
    throw std::invalid_argument("snapshot identity is longer than 200 bytes");
  if (identity == "." || identity == "..") {
    throw std::invalid_argument("snapshot identity '" + identity + "' is not a valid name");
  }
  for (unsigned char c : identity) {
    if (c == '/' || c == '\\' || c < 0x20 || c == 0x7f) {
      throw std::invalid_argument("snapshot identity '" + identity +
                                  "' must not contain '/', '\\' or control characters");
    }
  }
}

std::string snapshot_dir(const std::string& bucket, const std::string& identity) {
  check_snapshot_name(identity);
  return bucket + "/" + identity;
}

std::string base_path(const std::string& bucket, const std::string& identity) {
  return snapshot_dir(bucket, identity) + "/" + kBaseFile;
}

std::string delta_path(const std::string& bucket, const std::string& identity) {
  return snapshot_dir(bucket, identity) + "/" + kDeltaFile;
}

}  // namespace flare::emulator
