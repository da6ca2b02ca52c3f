#include "runtime/subprocess.hpp"

#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "runtime/error.hpp"
#include "runtime/interrupt.hpp"

extern char** environ;

namespace flare::proc {
namespace {

void set_nonblock_cloexec(int fd) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  fcntl(fd, F_SETFD, FD_CLOEXEC);
}

std::vector<std::string> build_env(const SpawnOptions& o) {
  std::map<std::string, std::string> vars;
  if (!o.clear_env) {
    for (char** e = environ; e && *e; ++e) {
      std::string kv = *e;
      auto eq = kv.find('=');
      if (eq != std::string::npos) vars[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
  }
  for (const auto& [k, v] : o.env) vars[k] = v;
  std::vector<std::string> out;
  for (const auto& [k, v] : vars) out.push_back(k + "=" + v);
  return out;
}

}  // namespace

Child::Child(const SpawnOptions& opts) {
  if (opts.argv.empty() || opts.argv[0].empty())
    throw std::runtime_error("argv[1] (the program) is required");
  // Everything the child needs is prepared before fork: the child only calls
  // async-signal-safe functions.
  std::vector<char*> argv;
  for (const auto& a : opts.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_strings = build_env(opts);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);

  int pin[2], pout[2], perr[2], pexec[2];
  if (pipe(pin) || pipe(pout) || pipe(perr) || pipe2(pexec, O_CLOEXEC)) {
    throw std::runtime_error(std::string("cannot create pipes: ") + std::strerror(errno));
  }
  const int max_fd = static_cast<int>(std::min<long>(sysconf(_SC_OPEN_MAX), 1 << 16));
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork failed: ") + std::strerror(errno));
  if (pid == 0) {
    setpgid(0, 0);
    struct sigaction sa {};
    sa.sa_handler = SIG_DFL;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGPIPE, &sa, nullptr);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (opts.stdin_data) {
      dup2(pin[0], 0);
    } else {
      int devnull = open("/dev/null", O_RDONLY);
      dup2(devnull, 0);
    }
    dup2(pout[1], 1);
    dup2(perr[1], 2);
    for (int fd : {pin[0], pin[1], pout[0], pout[1], perr[0], perr[1]}) close(fd);
    // Descriptors the parent's other threads opened without O_CLOEXEC (an
    // accepted socket, another child's pipe) must not live on in the child: a
    // long-lived child would hold a connection the parent closed open, so its
    // peer waits for an answer no one reads. pexec[1] has O_CLOEXEC already.
    if (syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC) != 0) {
      for (int fd = 3; fd < max_fd; ++fd) fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    int e = 0;
    if (!opts.cwd.empty() && chdir(opts.cwd.c_str()) != 0) {
      e = errno;
    } else {
      execvpe(argv[0], argv.data(), envp.data());
      e = errno;
    }
    ssize_t w = write(pexec[1], &e, sizeof e);
    (void)w;
    _exit(127);
  }
  setpgid(pid, pid);  // also from the parent, so kill_group works at once
  pid_ = pid;
  close(pin[0]);
  close(pout[1]);
  close(perr[1]);
  close(pexec[1]);
  int child_errno = 0;
  ssize_t n;
  do {
    n = read(pexec[0], &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  close(pexec[0]);
  out_ = pout[0];
  err_ = perr[0];
  set_nonblock_cloexec(out_);
  set_nonblock_cloexec(err_);
  if (opts.stdin_data) {
    in_ = pin[1];
    set_nonblock_cloexec(in_);
    pending_in_ = *opts.stdin_data;
    if (pending_in_.empty()) close_fd(in_);
  } else {
    close(pin[1]);
  }
  if (n == static_cast<ssize_t>(sizeof child_errno)) {
    try_reap(true);
    close_fd(in_);
    close_fd(out_);
    close_fd(err_);
    throw std::runtime_error("cannot run '" + opts.argv[0] + "'" +
                             (opts.cwd.empty() ? "" : " in '" + opts.cwd + "'") + ": " +
                             std::strerror(child_errno));
  }
}

Child::~Child() {
  if (!reaped_) {
    kill_group(SIGKILL);
    try_reap(true);
  }
  close_fd(in_);
  close_fd(out_);
  close_fd(err_);
}

void Child::close_fd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

void Child::kill_group(int signo) {
  if (pid_ > 0 && !reaped_) {
    if (::kill(-pid_, signo) != 0) ::kill(pid_, signo);
  }
}

bool Child::running() {
  if (reaped_) return false;
  pump(0);
  return !try_reap(false);
}

bool Child::try_reap(bool block) {
  if (reaped_) return true;
  int st = 0;
  pid_t r;
  do {
    r = waitpid(pid_, &st, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return false;
  reaped_ = true;
  if (r > 0 && WIFEXITED(st)) {
    result_.status = WEXITSTATUS(st);
  } else if (r > 0 && WIFSIGNALED(st)) {
    result_.signal = WTERMSIG(st);
    result_.status = 128 + result_.signal;
  }
  return true;
}

// One round of poll over the pipes and the interrupt fd.
void Child::pump(int timeout_ms) {
  struct pollfd fds[4];
  int n = 0;
  int i_out = -1, i_err = -1, i_in = -1;
  if (out_ >= 0) fds[i_out = n++] = {out_, POLLIN, 0};
  if (err_ >= 0) fds[i_err = n++] = {err_, POLLIN, 0};
  if (in_ >= 0) fds[i_in = n++] = {in_, POLLOUT, 0};
  fds[n++] = {flare::interrupt::wake_fd(), POLLIN, 0};
  int r = poll(fds, n, timeout_ms);
  if (r < 0 && errno != EINTR)
    throw std::runtime_error(std::string("poll failed: ") + std::strerror(errno));
  if (r <= 0) return;
  char buf[65536];
  auto drain = [&](int idx, int& fd, std::string& sink) {
    if (idx < 0 || !(fds[idx].revents & (POLLIN | POLLHUP | POLLERR))) return;
    for (;;) {
      ssize_t k = read(fd, buf, sizeof buf);
      if (k > 0) {
        sink.append(buf, static_cast<size_t>(k));
        continue;
      }
      if (k < 0 && (errno == EAGAIN || errno == EINTR)) return;
      close_fd(fd);  // EOF or error
      return;
    }
  };
  drain(i_out, out_, result_.out);
  drain(i_err, err_, result_.err);
  if (i_in >= 0 && (fds[i_in].revents & (POLLOUT | POLLHUP | POLLERR))) {
    while (in_off_ < pending_in_.size()) {
      ssize_t k = write(in_, pending_in_.data() + in_off_, pending_in_.size() - in_off_);
      if (k > 0) {
        in_off_ += static_cast<size_t>(k);
      } else if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
        break;
      } else {
        in_off_ = pending_in_.size();  // EPIPE: the child does not read its input
      }
    }
    if (in_off_ >= pending_in_.size()) close_fd(in_);
  }
}

Result Child::wait(double timeout_s) {
  using clock = std::chrono::steady_clock;
  auto deadline = clock::now() + std::chrono::duration_cast<clock::duration>(
                                     std::chrono::duration<double>(timeout_s < 0 ? 0 : timeout_s));
  for (;;) {
    if (flare::interrupt::pending()) {
      kill_group(SIGKILL);
      try_reap(true);
      flare::interrupt::check();
    }
    bool pipes_open = out_ >= 0 || err_ >= 0;
    if (!pipes_open && try_reap(false)) break;
    int wait_ms = pipes_open ? 200 : 20;
    if (timeout_s >= 0) {
      auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
      if (left <= 0) {
        result_.timed_out = true;
        kill_group(SIGKILL);
        try_reap(true);
        break;
      }
      if (left < wait_ms) wait_ms = static_cast<int>(left);
    }
    pump(wait_ms);
  }
  // Whatever is still buffered after exit (or the kill) is kept.
  for (int round = 0; round < 50 && (out_ >= 0 || err_ >= 0); ++round) pump(0);
  close_fd(in_);
  close_fd(out_);
  close_fd(err_);
  return result_;
}

}  // namespace flare::proc
