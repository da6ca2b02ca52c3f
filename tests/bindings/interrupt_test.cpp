#include "runtime/interrupt.hpp"

#include <doctest/doctest.h>
#include <signal.h>

#include <chrono>
#include <thread>

#include "lua_eval.hpp"

namespace {
// Sends a pretend SIGINT from another thread after a short delay.
std::thread interrupt_soon() {
  return std::thread([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    flare::interrupt::raise_for_test(SIGINT);
  });
}
}  // namespace

TEST_CASE("SIGINT during flare.sleep raises an interrupted error") {
  flare::lua::Host h;
  flare::interrupt::clear();
  flare::interrupt::reset_count();
  auto t = interrupt_soon();
  std::string err = eval(h, "flare.sleep(30)");
  t.join();
  CHECK(err == "interrupted");
  CHECK_FALSE(flare::interrupt::pending());
}

// Interpreted code is interrupted by the hook the signal handler arms. (Compiled
// loops see it only with LuaJIT built with LUAJIT_ENABLE_CHECKHOOK, which the
// sanitizer build does not link: tests/lua/interrupt_process_spec.lua covers them.)
TEST_CASE("SIGINT interrupts an interpreted Lua loop that never waits in C") {
  flare::lua::Host h;
  flare::interrupt::clear();
  flare::interrupt::reset_count();
  auto t = interrupt_soon();
  // A loop with calls: the hook armed by the signal handler raises in it.
  std::string err = eval(h,
                         "jit.off() local function f(x) return x + 1 end\n"
                         "local n = 0 while true do n = f(n) if n < 0 then break end end");
  t.join();
  CHECK(err == "interrupted");
  flare::interrupt::reset_count();
}

TEST_CASE("an interrupt can be caught with pcall and the state stays usable") {
  flare::lua::Host h;
  flare::interrupt::clear();
  auto t = interrupt_soon();
  CHECK(eval(h,
             "local ok, e = pcall(flare.sleep, 30)\n"
             "assert(not ok and e.code == 'interrupted')\n"
             "result = 'still here'") == "");
  t.join();
  CHECK(global_string(h, "result") == "still here");
  flare::interrupt::reset_count();
}
