#pragma once
// The sandbox's limits on one Lua state: memory (LuaJIT's allocator, wrapped), wall-clock time
// (a timer thread that interrupts the Lua thread, compiled loops included) and an instruction
// budget (a count hook; the JIT is off while one is set). A limit that is reached stays reached:
// the code that caught the error gets it again at its next instruction, until protected_run
// returns; the cleanups that follow get a grace (kGrace*).
#include <lua.hpp>

namespace flare::sandbox {

struct Limits {
  double memory_mb = 0;     // 0 = none
  double time_s = 0;        // 0 = none
  double instructions = 0;  // 0 = none (VM instructions, counted per 1000)
};

constexpr double kGraceSeconds = 10;
constexpr double kGraceMemoryMb = 64;

// Once per state, before the sandboxed code runs.
void arm_limits(lua_State* L, const Limits& limits);
// Stops the timer thread (before the state closes).
void disarm_limits();

// flare.sandbox.require: lua_pcall of the function below nargs arguments; the outermost call
// into a module ends with {code = "sandbox_limit", capability = "limits.time"} after seconds
// (0: no limit), compiled loops included.
int pcall_with_time_limit(lua_State* L, int nargs, double seconds);

// flare.sandbox_native.protected_run(f, ...): calls f; a limit reached meanwhile, or an error,
// is raised again as {code = "sandbox_limit" | ..., message = ...} after f has unwound; then
// the cleanup grace begins.
int protected_run(lua_State* L);

}  // namespace flare::sandbox
