#include "runtime/landlock.hpp"

#include <fcntl.h>
#include <linux/landlock.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

// Rights newer than the installed kernel headers (Debian 12 ships 6.1's).
#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif

namespace flare::landlock {
namespace {

constexpr uint64_t kRead = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
constexpr uint64_t kWriteAbi1 = LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR |
                                LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_CHAR |
                                LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
                                LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO |
                                LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SYM;

// Every filesystem right this ABI knows: what is handled and not granted is refused.
uint64_t handled_for(int abi) {
  uint64_t all = kRead | kWriteAbi1 | LANDLOCK_ACCESS_FS_EXECUTE;
  if (abi >= 2) all |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3) all |= LANDLOCK_ACCESS_FS_TRUNCATE;
  if (abi >= 5) all |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
  return all;
}

uint64_t write_rights(int abi) {
  uint64_t w = kWriteAbi1;
  if (abi >= 2) w |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3) w |= LANDLOCK_ACCESS_FS_TRUNCATE;
  if (abi >= 5) w |= LANDLOCK_ACCESS_FS_IOCTL_DEV;  // terminals and /dev/null under a granted tree
  return w;
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

}  // namespace

int abi_version() {
  long v = syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  return v > 0 ? static_cast<int>(v) : 0;
}

Outcome restrict_self(const std::vector<Rule>& rules) {
  Outcome out;
  out.abi = abi_version();
  if (out.abi == 0) {
    out.message = "this kernel has no Landlock (Linux >= 5.13 with landlock in the LSM list)";
    return out;
  }
  landlock_ruleset_attr attr{};
  attr.handled_access_fs = handled_for(out.abi);
  Fd ruleset{static_cast<int>(syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0))};
  if (ruleset.fd < 0) {
    out.message = std::string("landlock_create_ruleset: ") + std::strerror(errno);
    return out;
  }
  std::string missing;
  for (const auto& r : rules) {
    Fd path{open(r.path.c_str(), O_PATH | O_CLOEXEC)};
    if (path.fd < 0) {
      missing += (missing.empty() ? "" : ", ") + r.path;
      continue;
    }
    landlock_path_beneath_attr pb{};
    pb.parent_fd = path.fd;
    pb.allowed_access = kRead | (r.access == Access::ReadWrite ? write_rights(out.abi) : 0);
    // A file (not a directory) takes only the file rights.
    struct stat st {};
    if (fstat(path.fd, &st) == 0 && !S_ISDIR(st.st_mode)) {
      pb.allowed_access &= LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE |
                           LANDLOCK_ACCESS_FS_TRUNCATE | LANDLOCK_ACCESS_FS_IOCTL_DEV;
    }
    pb.allowed_access &= attr.handled_access_fs;
    if (syscall(SYS_landlock_add_rule, ruleset.fd, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) != 0) {
      out.message = "landlock_add_rule " + r.path + ": " + std::strerror(errno);
      return out;
    }
  }
  // Required of an unprivileged process; the sandbox runs no programs anyway.
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    out.message = std::string("prctl(PR_SET_NO_NEW_PRIVS): ") + std::strerror(errno);
    return out;
  }
  if (syscall(SYS_landlock_restrict_self, ruleset.fd, 0) != 0) {
    out.message = std::string("landlock_restrict_self: ") + std::strerror(errno);
    return out;
  }
  out.applied = true;
  if (!missing.empty()) out.message = "not granted (missing): " + missing;
  return out;
}

}  // namespace flare::landlock
