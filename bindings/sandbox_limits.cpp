#include "sandbox_limits.hpp"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

#include "error_boundary.hpp"
#include "host.hpp"
#include "lua_support.hpp"
#include "runtime/interrupt.hpp"

namespace flare::sandbox {
namespace {

using Clock = std::chrono::steady_clock;

enum class Reached { None, Memory, Time, Instructions };

constexpr int kCountStep = 1000;

Limits g_limits;
std::atomic<Reached> g_reached{Reached::None};
std::atomic<bool> g_sticky{false};  // raise again at every instruction (until protected_run ends)

// Memory: every byte the state allocates after arming, against the cap.
lua_Alloc g_inner_alloc = nullptr;
void* g_inner_ud = nullptr;
size_t g_used = 0;
size_t g_cap = 0;

// Instructions.
double g_executed = 0;
double g_budget = 0;

// Time: a thread waits for the deadline, then interrupts the Lua thread. Its state is never
// destroyed: flare.sandbox.require's timer thread is detached and outlives main().
struct Timer {
  std::mutex mu;
  std::condition_variable cv;
  Clock::time_point deadline = Clock::time_point::max();
  bool stop = false;
  bool started = false;
  std::thread thread;  // flare run --sandbox's, joined by disarm_limits
  pthread_t lua_thread{};
};
Timer& timer() {
  static Timer* t = new Timer;
  return *t;
}
std::string g_time_grant = "--time-limit SECONDS";
int g_call_depth = 0;

void* counting_alloc(void* ud, void* ptr, size_t osize, size_t nsize) {
  size_t old = ptr ? osize : 0;
  if (nsize > old && g_cap > 0 && g_used + (nsize - old) > g_cap) {
    g_reached.store(Reached::Memory);
    return nullptr;  // LuaJIT raises "not enough memory"
  }
  void* p = g_inner_alloc(g_inner_ud ? g_inner_ud : ud, ptr, osize, nsize);
  if (p || nsize == 0) g_used = g_used - std::min(g_used, old) + nsize;
  return p;
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.15g", v);
  return buf;
}

flare::Error limit(const std::string& capability, const std::string& what,
                   const std::string& grant) {
  flare::Error e("sandbox_limit",
                 "sandbox: " + capability + " reached: " + what + " (grant: " + grant + ")");
  e.fields = {{"capability", capability}, {"grant", grant}};
  return e;
}

flare::Error limit_error(Reached r) {
  switch (r) {
    case Reached::Memory:
      return limit("limits.memory", number(g_limits.memory_mb) + " MB of Lua memory",
                   "--memory-mb MB");
    case Reached::Time:
      return limit("limits.time", number(g_limits.time_s) + " s of wall-clock time", g_time_grant);
    case Reached::Instructions:
      return limit("limits.instructions", number(g_limits.instructions) + " VM instructions",
                   "--max-instructions N");
    case Reached::None:
      break;
  }
  return limit("limits", "a limit", "see flare run --sandbox --help");
}

void raise_reached(lua_State* L) {
  flare::lua::push_error_table(L, limit_error(g_reached.load()));
  lua_error(L);
}

// The resting hook while limits are armed: counts instructions; raises a reached limit.
void limit_hook(lua_State* L, lua_Debug*) {
  if (g_sticky.load() && g_reached.load() != Reached::None) raise_reached(L);
  if (g_budget > 0) {
    g_executed += kCountStep;
    if (g_executed > g_budget) {
      g_reached.store(Reached::Instructions);
      g_sticky.store(true);
      flare::lua::set_resting_hook(limit_hook, LUA_MASKCOUNT, 1);
      lua_sethook(L, limit_hook, LUA_MASKCOUNT, 1);
      raise_reached(L);
    }
  }
}

void timer_main() {
  Timer& t = timer();
  std::unique_lock<std::mutex> lock(t.mu);
  for (;;) {
    if (t.stop) return;
    if (t.cv.wait_until(lock, t.deadline) == std::cv_status::timeout && !t.stop &&
        Clock::now() >= t.deadline) {
      g_reached.store(Reached::Time);
      g_sticky.store(true);
      flare::lua::set_resting_hook(limit_hook, LUA_MASKCOUNT, 1);
      // As a Ctrl-C does: waits in C return, compiled loops leave at their hook check.
      pthread_kill(t.lua_thread, SIGINT);
      t.deadline = Clock::time_point::max();
    }
  }
}

// seconds < 0: no deadline.
void set_deadline(double seconds) {
  Timer& t = timer();
  std::lock_guard<std::mutex> lock(t.mu);
  t.deadline = seconds < 0 ? Clock::time_point::max()
                           : Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                std::chrono::duration<double>(seconds));
  t.cv.notify_all();
}

void start_timer(bool detached) {
  Timer& t = timer();
  if (t.started) return;
  t.started = true;
  t.lua_thread = pthread_self();
  if (detached) {
    std::thread(timer_main).detach();
  } else {
    t.thread = std::thread(timer_main);
  }
}

// After our own timer's interrupt: consume it (its signal may still be on its way).
void consume_time_interrupt() {
  for (int i = 0; i < 200 && !flare::interrupt::pending(); i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  flare::interrupt::clear();
  flare::interrupt::reset_count();
}

// Marks the error at the top as described, so that the host's handler keeps the traceback.
void mark_described(lua_State* L) {
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, "flare.described_error");
}

// Where the sandboxed code raised the error, as the host's handler records it (host.cpp).
int traceback(lua_State* L) {
  if (lua_isstring(L, 1)) {
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
  } else {
    luaL_traceback(L, L, nullptr, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "flare.last_traceback");
    lua_settop(L, 1);
  }
  mark_described(L);
  return 1;
}

}  // namespace

void arm_limits(lua_State* L, const Limits& limits) {
  g_limits = limits;
  if (limits.memory_mb > 0) {
    g_inner_alloc = lua_getallocf(L, &g_inner_ud);
    g_used = static_cast<size_t>(lua_gc(L, LUA_GCCOUNT, 0)) * 1024;
    g_cap = static_cast<size_t>(limits.memory_mb * 1024 * 1024);
    lua_setallocf(L, counting_alloc, g_inner_ud);
  }
  g_budget = limits.instructions;
  if (g_budget > 0) {
    // A count hook makes every compiled loop leave its trace at each iteration (the hook check),
    // which costs far more than interpreting: the budget runs interpreted.
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    flare::lua::set_resting_hook(limit_hook, LUA_MASKCOUNT, kCountStep);
    lua_sethook(L, limit_hook, LUA_MASKCOUNT, kCountStep);
  } else {
    flare::lua::set_resting_hook(limit_hook, 0, 0);
  }
  if (limits.time_s > 0) {
    set_deadline(limits.time_s);
    start_timer(false);
  }
}

void disarm_limits() {
  Timer& t = timer();
  if (!t.thread.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(t.mu);
    t.stop = true;
    t.cv.notify_all();
  }
  t.thread.join();
}

int pcall_with_time_limit(lua_State* L, int nargs, double seconds) {
  bool outer = seconds > 0 && g_call_depth == 0;
  if (outer) {
    g_limits.time_s = seconds;
    g_time_grant = "time_limit_s of flare.sandbox.require";
    set_deadline(seconds);
    start_timer(true);
  }
  g_call_depth++;
  int status = lua_pcall(L, nargs, LUA_MULTRET, 0);
  g_call_depth--;
  if (!outer) return status;
  set_deadline(-1);
  Reached reached = g_reached.exchange(Reached::None);
  g_sticky.store(false);
  flare::lua::set_resting_hook(nullptr, 0, 0);
  lua_sethook(L, nullptr, 0, 0);
  if (reached == Reached::Time) {
    consume_time_interrupt();
    if (status != 0) {
      lua_pop(L, 1);
      flare::lua::push_error_table(L, limit_error(reached));
    }
  }
  return status;
}

int protected_run(lua_State* L) {
  flare::lua::check_function(L, 1, "flare.sandbox_native.protected_run", "f");
  int nargs = lua_gettop(L) - 1;
  lua_pushcfunction(L, traceback);
  lua_insert(L, 1);
  int status = lua_pcall(L, nargs, LUA_MULTRET, 1);
  // The sandboxed code has unwound: what remains is the cleanups', with a grace.
  Reached reached = g_reached.load();
  g_sticky.store(false);
  flare::lua::set_resting_hook(limit_hook, g_budget > 0 ? LUA_MASKCOUNT : 0,
                               g_budget > 0 ? kCountStep : 0);
  lua_sethook(L, limit_hook, g_budget > 0 ? LUA_MASKCOUNT : 0, g_budget > 0 ? kCountStep : 0);
  if (reached != Reached::None) {
    g_reached.store(Reached::None);
    if (g_budget > 0) g_budget = g_executed + g_budget * 0.1 + 1e7;
    if (g_cap > 0) g_cap = g_used + static_cast<size_t>(kGraceMemoryMb * 1024 * 1024);
    if (g_limits.time_s > 0) set_deadline(kGraceSeconds);
    if (reached == Reached::Time) consume_time_interrupt();  // ours, not the user's
  }
  if (status != 0) {
    if (reached != Reached::None) {
      lua_pop(L, 1);
      flare::lua::push_error_table(L, limit_error(reached));
      mark_described(L);  // raised where the traceback handler saw the limit
    }
    return lua_error(L);
  }
  return lua_gettop(L) - 1;
}

}  // namespace flare::sandbox
