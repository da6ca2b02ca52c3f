#pragma once
// A child process run without a shell: argv is executed directly (PATH lookup),
// in its own process group, with piped stdin/stdout/stderr. Waiting pumps the
// pipes, honours a deadline (then the whole group is killed) and Ctrl-C (the
// group is killed and flare::Interrupted is thrown). No Lua here.
#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace flare::proc {

struct SpawnOptions {
  std::vector<std::string> argv;
  std::optional<std::string> stdin_data;   // nullopt: stdin is /dev/null
  std::map<std::string, std::string> env;  // added to (or replacing in) the parent's environment
  bool clear_env = false;                  // start from an empty environment
  std::string cwd;
};

struct Result {
  int status = -1;  // exit code, or 128 + signal when killed by a signal
  int signal = 0;   // the terminating signal, 0 when it exited
  bool timed_out = false;
  std::string out;
  std::string err;
};

class Child {
 public:
  explicit Child(const SpawnOptions& opts);  // throws std::runtime_error when exec fails
  ~Child();                                  // kills and reaps the group if still running
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  // False once the child has exited (it is reaped then); reads what it wrote so far, so a
  // child polled this way does not block on a full pipe.
  bool running();
  // Sends a signal to the whole process group.
  void kill_group(int signo);
  // Waits for exit; timeout_s < 0 waits forever. On timeout the group gets SIGKILL.
  Result wait(double timeout_s);

 private:
  void pump(int timeout_ms);
  bool try_reap(bool block);
  void close_fd(int& fd);

  pid_t pid_ = -1;
  bool reaped_ = false;
  int in_ = -1, out_ = -1, err_ = -1;
  std::string pending_in_;
  size_t in_off_ = 0;
  Result result_;
};

}  // namespace flare::proc
