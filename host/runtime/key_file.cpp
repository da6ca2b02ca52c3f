#include "runtime/key_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

namespace flare {

KeyFile read_key_file(const std::string& path) {
  KeyFile out;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  out.exists = true;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && (st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    out.warning = "the API key file " + path + " has mode " + mode +
                  ": others may read the key; run chmod 600 on it";
  }
  std::string text;
  char buf[4096];
  ssize_t n;
  while (text.find('\n') == std::string::npos && (n = ::read(fd, buf, sizeof buf)) > 0) {
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  out.key = text.substr(0, text.find('\n'));
  if (!out.key.empty() && out.key.back() == '\r') out.key.pop_back();
  return out;
}

}  // namespace flare
