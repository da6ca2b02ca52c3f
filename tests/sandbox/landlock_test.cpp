// host/runtime/landlock: a child process restricts itself and tries its files.
#include "runtime/landlock.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <string>

namespace fs = std::filesystem;
using flare::landlock::Access;

namespace {

struct Scratch {
  fs::path dir;
  Scratch() {
    std::string tmpl = (fs::temp_directory_path() / "flare-landlock-XXXXXX").string();
    dir = mkdtemp(tmpl.data());
    for (const char* d : {"read", "write", "none"}) {
      fs::create_directories(dir / d);
      std::ofstream(dir / d / "f") << "x";
    }
    fs::create_symlink(dir / "none" / "f", dir / "write" / "link");
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

bool opens(const fs::path& p, int flags) {
  int fd = open(p.c_str(), flags | O_CLOEXEC, 0644);
  if (fd >= 0) close(fd);
  return fd >= 0;
}

}  // namespace

TEST_CASE("landlock: the granted trees only, in the kernel") {
  if (flare::landlock::abi_version() == 0) {
    MESSAGE("this kernel has no Landlock: skipped");
    return;
  }
  Scratch s;
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    auto out = flare::landlock::restrict_self({{(s.dir / "read").string(), Access::Read},
                                               {(s.dir / "write").string(), Access::ReadWrite}});
    if (!out.applied) _exit(100);
    // Each check sets one bit when it goes the wrong way.
    int wrong = 0;
    if (!opens(s.dir / "read" / "f", O_RDONLY)) wrong |= 1;
    if (opens(s.dir / "read" / "f", O_WRONLY)) wrong |= 2;
    if (!opens(s.dir / "write" / "new", O_WRONLY | O_CREAT)) wrong |= 4;
    if (opens(s.dir / "none" / "f", O_RDONLY)) wrong |= 8;
    if (opens(s.dir / "write" / ".." / "none" / "f", O_RDONLY)) wrong |= 16;
    if (opens(s.dir / "write" / "link", O_RDONLY)) wrong |= 32;  // a symlink out
    if (opens("/etc/hostname", O_RDONLY)) wrong |= 64;
    _exit(wrong);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // The parent is not restricted.
  CHECK(opens(s.dir / "none" / "f", O_RDONLY));
}

TEST_CASE("landlock: a missing path is skipped and named") {
  if (flare::landlock::abi_version() == 0) return;
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    auto out = flare::landlock::restrict_self({{"/nonexistent-flare-path", Access::Read}});
    _exit(out.applied && out.message.find("/nonexistent-flare-path") != std::string::npos ? 0 : 1);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WEXITSTATUS(status) == 0);
}
