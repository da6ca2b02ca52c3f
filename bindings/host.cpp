#include "host.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <lua.hpp>

#include "error_boundary.hpp"
#include "lua_support.hpp"
#include "module.hpp"
#include "module_trees.hpp"
#include "runtime/interrupt.hpp"
#if defined(FLARE_HAVE_FIREWORKS)
#include "fireworks/event_loop.hpp"
#elif defined(FLARE_HAVE_NET)
#include "net/http_client.hpp"
#endif

#ifndef FLARE_VERSION
#define FLARE_VERSION "0.0.0"
#endif

namespace flare::lua {
namespace fs = std::filesystem;
namespace {

lua_State* g_main_state = nullptr;
std::atomic<LuaHook> g_resting_hook{nullptr};
std::atomic<int> g_resting_mask{0};
std::atomic<int> g_resting_count{0};

// Armed from the signal handler so that Lua code that never waits in C (a
// plain loop) is interrupted too. Removes itself first. Loops compiled to
// machine code see it as well: flare links a LuaJIT built with
// LUAJIT_ENABLE_CHECKHOOK (dev.sh), whose traces leave when a hook is set.
// Puts back the resting hook (the sandbox's limits) instead.
void interrupt_hook(lua_State* L, lua_Debug*) {
  lua_sethook(L, g_resting_hook.load(), g_resting_mask.load(), g_resting_count.load());
  if (flare::interrupt::pending()) {
    flare::interrupt::clear();
    push_error_table(L, flare::Interrupted());
    lua_error(L);
  }
}

void on_signal(int) {
  if (g_main_state) {
    lua_sethook(g_main_state, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
  }
}

// A Lua error outside any protected call: LuaJIT exits after this returns, so
// the Lua cleanups cannot run; the cloud resources are released from C++.
int on_panic(lua_State* L) {
  std::fprintf(stderr, "flare: unprotected Lua error: %s\n", describe_error(L, -1).c_str());
  flare::interrupt::run_emergency_hook();
  return 0;
}

[[noreturn]] void on_terminate() {
  std::fprintf(stderr, "flare: fatal error (std::terminate)\n");
  flare::interrupt::run_emergency_hook();
  std::abort();
}

int l_sleep(lua_State* L) {
  double s = check_number(L, 1, "flare.sleep", "seconds");
  if (!(s >= 0)) raise_invalid("flare.sleep", "argument 'seconds' must be >= 0");
#if defined(FLARE_HAVE_FIREWORKS)
  // Requests submitted earlier (and their retry timers) keep progressing while
  // the script sleeps.
  flare::fireworks::EventLoop::instance().sleep(s);
#elif defined(FLARE_HAVE_NET)
  flare::net::shared_client().run_until([] { return false; }, s);
#else
  flare::interrupt::sleep_interruptible(s);
#endif
  return 0;
}

int l_clock(lua_State* L) {
  auto t = std::chrono::steady_clock::now().time_since_epoch();
  lua_pushnumber(L, std::chrono::duration<double>(t).count());
  return 1;
}

int l_time(lua_State* L) {
  auto t = std::chrono::system_clock::now().time_since_epoch();
  lua_pushnumber(L, std::chrono::duration<double>(t).count());
  return 1;
}

// flare.error{code=, message=, ...}: raise a structured error from Lua.
int l_error(lua_State* L) {
  Options o(L, 1, "flare.error");
  std::string code = o.string("code", "error");
  std::string message = o.string("message", code);
  int status = static_cast<int>(o.integer("status", 0, 0, 999));
  bool retryable = o.boolean("retryable", false);
  std::string request_id = o.string("request_id", "");
  o.finish();
  throw flare::Error(code, message, status, retryable, request_id);  // the boundary raises it
}

// flare.__index: registered C modules and stdlib modules load on first use.
int flare_index(lua_State* L) {
  if (lua_type(L, 2) != LUA_TSTRING) return 0;
  std::string name = lua_tostring(L, 2);
  std::string modname = "flare." + name;
  bool known = false;
  for (const auto& m : registered_modules()) known = known || name == m.name;
  if (!known) {
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchpath");
    lua_pushstring(L, modname.c_str());
    lua_getfield(L, -3, "path");
    lua_call(L, 2, 1);
    known = !lua_isnil(L, -1);
    lua_pop(L, 2);
  }
  if (!known) return 0;
  lua_getglobal(L, "require");
  lua_pushstring(L, modname.c_str());
  lua_call(L, 1, 1);
  return 1;
}

void set_search_path(lua_State* L, const std::string& script_dir) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  std::string path = lua_search_path(script_dir, stdlib_dir()) + lua_tostring(L, -1);
  lua_pop(L, 1);
  lua_pushstring(L, path.c_str());
  lua_setfield(L, -2, "path");
  lua_getfield(L, -1, "cpath");
  std::string cpath = c_search_path() + lua_tostring(L, -1);
  lua_pop(L, 1);
  lua_pushstring(L, cpath.c_str());
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);
}

void open_flare_global(lua_State* L) {
  lua_createtable(L, 0, 16);
  lua_pushstring(L, FLARE_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushinteger(L, kApiVersion);
  lua_setfield(L, -2, "api_version");
  lua_pushcfunction(L, l_sleep);
  lua_setfield(L, -2, "sleep");
  lua_pushcfunction(L, l_clock);
  lua_setfield(L, -2, "clock");
  lua_pushcfunction(L, l_time);
  lua_setfield(L, -2, "time");
  lua_pushcfunction(L, l_error);
  lua_setfield(L, -2, "error");
  std::error_code ec;
  lua_pushstring(L, fs::read_symlink("/proc/self/exe", ec).c_str());
  lua_setfield(L, -2, "executable");
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, flare_index);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);

  lua_pushvalue(L, -1);
  lua_setglobal(L, "flare");
  // require("flare") returns the global; C modules are preloaded by name.
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, "flare");
  lua_pop(L, 1);
  lua_getfield(L, -1, "preload");
  for (const auto& m : registered_modules()) {
    lua_pushcfunction(L, m.open);
    lua_setfield(L, -2, (std::string("flare.") + m.name).c_str());
  }
  lua_pop(L, 3);
}

int traceback_handler(lua_State* L) {
  // An error a nearer handler already described (the sandbox's, at the raise) keeps that
  // description: a traceback from here would show only where it was raised again.
  lua_getfield(L, LUA_REGISTRYINDEX, "flare.described_error");
  bool described = lua_rawequal(L, -1, 1);
  lua_pop(L, 1);
  if (described) return 1;
  if (lua_isstring(L, 1)) {
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
    return 1;
  }
  // Keep structured errors as they are; remember where they were raised.
  luaL_traceback(L, L, nullptr, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, "flare.last_traceback");
  lua_settop(L, 1);
  return 1;
}

void push_args(lua_State* L, const std::vector<std::string>& args, const std::string& name) {
  lua_createtable(L, static_cast<int>(args.size()), 2);
  lua_pushstring(L, "flare");
  lua_rawseti(L, -2, -1);
  lua_pushstring(L, name.c_str());
  lua_rawseti(L, -2, 0);
  for (size_t i = 0; i < args.size(); i++) {
    lua_pushlstring(L, args[i].data(), args[i].size());
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
  lua_setglobal(L, "arg");
}

}  // namespace

void set_resting_hook(LuaHook hook, int mask, int count) {
  g_resting_mask.store(mask);
  g_resting_count.store(count);
  g_resting_hook.store(hook);
}

const char* luajit_version() {
  return LUAJIT_VERSION;
}

std::string stdlib_dir() {
  if (const char* env = std::getenv("FLARE_STDLIB")) return env;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
#ifdef FLARE_BUILD_DIR
    // Programs inside the build tree use the stdlib of the source tree.
    fs::path build = fs::weakly_canonical(FLARE_BUILD_DIR, ec);
    auto rel = exe.lexically_relative(build);
    if (!ec && !rel.empty() && *rel.begin() != "..") return FLARE_SOURCE_STDLIB;
#endif
    fs::path installed = exe.parent_path().parent_path() / "share/flare/stdlib";
    if (fs::is_directory(installed, ec)) return installed.string();
  }
#ifdef FLARE_INSTALL_STDLIB
  return FLARE_INSTALL_STDLIB;
#else
  return "stdlib";
#endif
}

Host::Host(const std::string& script_dir) : L_(luaL_newstate()) {
  if (!L_) {
    std::fprintf(stderr, "flare: cannot create a Lua state (out of memory)\n");
    std::exit(1);
  }
  luaL_openlibs(L_);
  install_error_boundary(L_);
  set_search_path(L_, script_dir);
  open_flare_global(L_);
  if (!g_main_state) {
    g_main_state = L_;
    flare::interrupt::install_handlers();
    flare::interrupt::set_signal_callback(on_signal);
    std::set_terminate(on_terminate);
  }
  lua_atpanic(L_, on_panic);
}

Host::~Host() {
  if (g_main_state == L_) {
    flare::interrupt::set_signal_callback(nullptr);
    g_main_state = nullptr;
  }
  lua_close(L_);
}

int Host::run_cleanups(const char* reason) {
  lua_getglobal(L_, "package");
  lua_getfield(L_, -1, "loaded");
  lua_getfield(L_, -1, "flare.cleanup");
  if (!lua_istable(L_, -1)) {
    lua_pop(L_, 3);
    return 0;
  }
  lua_getfield(L_, -1, "run_all");
  lua_pushstring(L_, reason);
  int failed = 0;
  if (lua_pcall(L_, 1, 1, 0) != 0) {
    std::fprintf(stderr, "flare: cleanup failed: %s\n", describe_error(L_, -1).c_str());
    failed = 1;
  } else if (lua_isnumber(L_, -1)) {
    failed = static_cast<int>(lua_tointeger(L_, -1));
  }
  lua_pop(L_, 4);
  return failed;
}

int Host::run_loaded(int load_status, const std::vector<std::string>& args,
                     const std::string& name) {
  if (load_status != 0) {
    std::fprintf(stderr, "flare: %s\n", describe_error(L_, -1).c_str());
    lua_pop(L_, 1);
    return 1;
  }
  push_args(L_, args, name);
  lua_pushcfunction(L_, traceback_handler);
  lua_insert(L_, -2);
  for (const auto& a : args) lua_pushlstring(L_, a.data(), a.size());
  int base = lua_gettop(L_) - static_cast<int>(args.size()) - 1;
  int status = lua_pcall(L_, static_cast<int>(args.size()), 0, base);
  int exit_code = 0;
  const char* reason = "exit";
  if (status != 0) {
    std::string code = error_code(L_, -1);
    if (code == "interrupted") {
      int signo = flare::interrupt::last_signal();
      bool term = signo == SIGTERM;
      std::fprintf(stderr, "flare: %s\n", term ? "terminated" : "interrupted");
      exit_code = term ? 143 : 130;
      reason = "interrupt";
    } else {
      std::string msg = describe_error(L_, -1);
      std::fprintf(stderr, "flare: %s\n", msg.c_str());
      if (lua_istable(L_, -1)) {
        lua_getfield(L_, LUA_REGISTRYINDEX, "flare.last_traceback");
        if (lua_isstring(L_, -1)) std::fprintf(stderr, "%s\n", lua_tostring(L_, -1));
        lua_pop(L_, 1);
      }
      exit_code = 1;
      reason = "error";
    }
    lua_pop(L_, 1);
  }
  lua_pop(L_, 1);  // the traceback handler
  flare::interrupt::clear();
  if (run_cleanups(reason) > 0 && exit_code == 0) exit_code = 1;
  return exit_code;
}

int Host::run_file(const std::string& path, const std::vector<std::string>& args) {
  int st = luaL_loadfile(L_, path == "-" ? nullptr : path.c_str());
  return run_loaded(st, args, path);
}

int Host::run_string(const std::string& code, const std::string& chunkname,
                     const std::vector<std::string>& args) {
  int st = luaL_loadbuffer(L_, code.data(), code.size(), chunkname.c_str());
  return run_loaded(st, args, chunkname);
}

}  // namespace flare::lua
