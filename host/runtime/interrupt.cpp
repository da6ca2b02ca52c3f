#include "runtime/interrupt.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>

#include "runtime/error.hpp"

namespace flare::interrupt {
namespace {

std::atomic<int> g_pending{0};
std::atomic<int> g_count{0};
std::atomic<int> g_last{0};
constexpr unsigned kTermGraceSeconds = 5;
int g_pipe[2] = {-1, -1};
std::atomic<void (*)(int)> g_callback{nullptr};

void on_signal(int signo) {
  int n = g_count.fetch_add(1) + 1;
  if (n >= 3) {
    // The user insists: cleanup is taking too long or hangs.
    signal(signo, SIG_DFL);
    raise(signo);
    _exit(128 + signo);
  }
  g_last.store(signo);
  g_pending.store(signo);
  // Code that never reaches a check (a loop compiled to machine code) would
  // ignore a single SIGTERM forever: if it is still unconsumed after a grace
  // period, the alarm ends the process.
  if (signo == SIGTERM) alarm(kTermGraceSeconds);
  if (g_pipe[1] >= 0) {
    char c = 1;
    ssize_t r = write(g_pipe[1], &c, 1);
    (void)r;
  }
  if (auto cb = g_callback.load()) cb(signo);
}

void on_alarm(int) {
  if (g_pending.load() != 0) {
    signal(SIGTERM, SIG_DFL);
    raise(SIGTERM);
    _exit(128 + SIGTERM);
  }
}

void ensure_pipe() {
  if (g_pipe[0] >= 0) return;
  if (pipe(g_pipe) != 0) std::abort();
  for (int fd : g_pipe) {
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
}

}  // namespace

void install_handlers() {
  ensure_pipe();
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  struct sigaction alarm_sa {};
  alarm_sa.sa_handler = on_alarm;
  sigemptyset(&alarm_sa.sa_mask);
  sigaction(SIGALRM, &alarm_sa, nullptr);
}

void set_signal_callback(void (*cb)(int)) {
  g_callback.store(cb);
}

bool pending() {
  return g_pending.load() != 0;
}
int signal_number() {
  return g_pending.load();
}
int last_signal() {
  return g_last.load();
}

void clear() {
  if (g_pending.exchange(0) == SIGTERM) alarm(0);
  if (g_pipe[0] >= 0) {
    char buf[64];
    while (read(g_pipe[0], buf, sizeof buf) > 0) {
    }
  }
}

void check() {
  if (pending()) {
    clear();
    throw Interrupted();
  }
}

int wake_fd() {
  ensure_pipe();
  return g_pipe[0];
}

int count() {
  return g_count.load();
}
void reset_count() {
  g_count.store(0);
}

void raise_for_test(int signo) {
  on_signal(signo);
}

void sleep_interruptible(double seconds) {
  using clock = std::chrono::steady_clock;
  auto deadline = clock::now() + std::chrono::duration<double>(seconds > 0 ? seconds : 0);
  for (;;) {
    check();
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
    if (left.count() <= 0) return;
    struct pollfd p {
      wake_fd(), POLLIN, 0
    };
    poll(&p, 1, static_cast<int>(left.count() > 1000 ? 1000 : left.count()));
  }
}

}  // namespace flare::interrupt
