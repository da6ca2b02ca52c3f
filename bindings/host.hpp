#pragma once
// The Lua host: one LuaJIT state with the flare global, the module search path,
// the error boundary and interrupt handling. No Lua header here, so the program
// (app/) can use it without touching the Lua C API.
#include <string>
#include <vector>

struct lua_State;
struct lua_Debug;

namespace flare::lua {

class Host {
 public:
  // script_dir: the first directory `require` searches ("" = current directory).
  explicit Host(const std::string& script_dir = "");
  ~Host();
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;

  // Each returns the process exit status: 0 success, 1 script error (message
  // and traceback printed on stderr), 130/143 interrupted by SIGINT/SIGTERM.
  // Cleanups registered with flare.defer run before they return.
  int run_file(const std::string& path, const std::vector<std::string>& args);
  int run_string(const std::string& code, const std::string& chunkname,
                 const std::vector<std::string>& args);

  // Runs the registered cleanups (flare.defer) once; returns how many failed.
  int run_cleanups(const char* reason);

  lua_State* state() { return L_; }

 private:
  int run_loaded(int load_status, const std::vector<std::string>& args, const std::string& name);
  lua_State* L_;
};

// flare.api_version: raised when a change breaks scripts and shared modules
// written for the previous one (modules check it when they are required).
constexpr int kApiVersion = 1;

// The hook the interrupt hook puts back after it has run (the sandbox's limit checks); by
// default none. Signal-safe to call (atomics only).
using LuaHook = void (*)(lua_State*, lua_Debug*);
void set_resting_hook(LuaHook hook, int mask, int count);

// Where the Lua standard library lives for this executable.
std::string stdlib_dir();

// The LuaJIT release flare runs on, e.g. "LuaJIT 2.1.0-beta3".
const char* luajit_version();

}  // namespace flare::lua
