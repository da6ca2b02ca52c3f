#pragma once
// API keys kept in files: the first line of the file, and a warning when
// anyone but the owner may read it (as ssh does for a private key).
#include <string>

namespace flare {

struct KeyFile {
  std::string key;      // the first line, without its newline; "" when missing or empty
  bool exists = false;  // the file could be opened
  std::string warning;  // non-empty when its mode lets the group or others read it
};

KeyFile read_key_file(const std::string& path);

}  // namespace flare
