#include "runtime/interrupt.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
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
std::atomic<bool> g_term_armed{false};
int g_pipe[2] = {-1, -1};
std::atomic<void (*)(int)> g_callback{nullptr};
pthread_t g_handler_thread{};
std::atomic<bool> g_handlers_installed{false};

// Hard exit: the handler posts the semaphore; the emergency thread runs the hook
// and exits. Without a hook (or thread) the handler exits at once.
std::atomic<void (*)()> g_hook{nullptr};
std::atomic<bool> g_hook_ran{false};
std::atomic<bool> g_thread_started{false};
std::atomic<bool> g_exiting{false};
std::atomic<int> g_exit_code{0};
sem_t g_exit_sem;

void hard_exit(int code) {
  if (g_exiting.exchange(true)) return;  // already on its way out
  g_exit_code.store(code);
  if (g_thread_started.load() && g_hook.load()) {
    alarm(kEmergencySeconds);  // the hook's deadline: on_alarm then _exits
    sem_post(&g_exit_sem);
    return;
  }
  _exit(code);
}

void on_signal_flag(int signo) {
  int n = g_count.fetch_add(1) + 1;
  if (n >= 3) {
    // The user insists: cleanup is taking too long or hangs.
    hard_exit(128 + signo);
    return;
  }
  g_last.store(signo);
  g_pending.store(signo);
  // SIGTERM: the process has kTermGraceSeconds to finish its cleanups.
  if (signo == SIGTERM && !g_term_armed.exchange(true)) alarm(kTermGraceSeconds);
  if (g_pipe[1] >= 0) {
    char c = 1;
    ssize_t r = write(g_pipe[1], &c, 1);
    (void)r;
  }
  if (auto cb = g_callback.load()) cb(signo);
}

void on_signal(int signo) {
  // The callback touches the Lua state, which belongs to the handler thread.
  if (g_handlers_installed.load() && !pthread_equal(pthread_self(), g_handler_thread)) {
    pthread_kill(g_handler_thread, signo);
    return;
  }
  on_signal_flag(signo);
}

void on_alarm(int) {
  if (g_exiting.load()) _exit(g_exit_code.load());  // the emergency hook ran out of time
  if (g_term_armed.load()) hard_exit(128 + SIGTERM);
}

void ensure_pipe() {
  if (g_pipe[0] >= 0) return;
  if (pipe(g_pipe) != 0) std::abort();
  for (int fd : g_pipe) {
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
}

void* emergency_thread(void*) {
  while (!g_exiting.load()) sem_wait(&g_exit_sem);
  run_emergency_hook();
  _exit(g_exit_code.load());
}

void start_emergency_thread() {
  if (g_thread_started.load()) return;
  sem_init(&g_exit_sem, 0, 0);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);  // the new thread inherits it: no signal lands there
  pthread_t t;
  bool ok = pthread_create(&t, nullptr, emergency_thread, nullptr) == 0;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (!ok) return;
  pthread_detach(t);
  g_thread_started.store(true);
}

}  // namespace

void install_handlers() {
  ensure_pipe();
  g_handler_thread = pthread_self();
  g_handlers_installed.store(true);
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

void set_emergency_hook(void (*hook)()) {
  if (hook) start_emergency_thread();
  g_hook.store(hook);
}

void run_emergency_hook() {
  if (g_hook_ran.exchange(true)) return;
  if (auto hook = g_hook.load()) hook();
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
  g_pending.store(0);
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
  on_signal_flag(signo);
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
