// flare.proc: child processes without a shell.
//   proc.run{argv = {...}, stdin =, timeout_s =, env = {K = V}, clear_env =, cwd =}
//     -> {status =, signal =, stdout =, stderr =, timed_out =}
//   proc.spawn{...same options...} -> child with child:pid(), child:kill(sig),
//     child:running(), child:wait{timeout_s =} -> the same result table
// The child gets its own process group; timeouts and Ctrl-C kill the whole group.
#include <signal.h>

#include <cstring>
#include <lua.hpp>
#include <memory>
#include <stdexcept>
#include <string>

#include "module.hpp"
#include "runtime/subprocess.hpp"

namespace flare::lua {
namespace {

const char* const kChildMeta = "flare.proc.child";

struct ChildBox {
  flare::proc::Child* child;
};

std::string field_name(const char* fn, const char* field) {
  return std::string(fn) + ": " + field;
}

flare::proc::SpawnOptions read_options(lua_State* L, const char* fn) {
  if (!lua_istable(L, 1)) throw std::runtime_error(std::string(fn) + ": expected an options table");
  static const char* const known[] = {"argv",      "stdin", "timeout_s", "env",
                                      "clear_env", "cwd",   nullptr};
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    lua_pop(L, 1);
    bool ok = lua_type(L, -1) == LUA_TSTRING;
    if (ok) {
      ok = false;
      for (int i = 0; known[i]; i++) ok = ok || std::strcmp(known[i], lua_tostring(L, -1)) == 0;
    }
    if (!ok) {
      std::string key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1);
      lua_pop(L, 1);
      throw std::runtime_error(std::string(fn) + ": unknown option '" + key + "'");
    }
  }
  flare::proc::SpawnOptions o;
  lua_getfield(L, 1, "argv");
  if (!lua_istable(L, -1))
    throw std::runtime_error(field_name(fn, "argv must be a list of strings"));
  int n = static_cast<int>(lua_objlen(L, -1));
  if (n == 0) throw std::runtime_error(field_name(fn, "argv must not be empty"));
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER) {
      throw std::runtime_error(std::string(fn) + ": argv[" + std::to_string(i) +
                               "] must be a string");
    }
    size_t len;
    const char* s = lua_tolstring(L, -1, &len);
    o.argv.emplace_back(s, len);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_getfield(L, 1, "stdin");
  if (lua_isstring(L, -1)) {
    size_t len;
    const char* s = lua_tolstring(L, -1, &len);
    o.stdin_data = std::string(s, len);
  } else if (!lua_isnil(L, -1)) {
    throw std::runtime_error(field_name(fn, "stdin must be a string"));
  }
  lua_pop(L, 1);
  lua_getfield(L, 1, "env");
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1)) {
        throw std::runtime_error(field_name(fn, "env must map names to strings"));
      }
      o.env[lua_tostring(L, -2)] = lua_tostring(L, -1);
      lua_pop(L, 1);
    }
  } else if (!lua_isnil(L, -1)) {
    throw std::runtime_error(field_name(fn, "env must be a table"));
  }
  lua_pop(L, 1);
  lua_getfield(L, 1, "clear_env");
  o.clear_env = lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, 1, "cwd");
  if (lua_isstring(L, -1)) {
    o.cwd = lua_tostring(L, -1);
  } else if (!lua_isnil(L, -1)) {
    throw std::runtime_error(field_name(fn, "cwd must be a string"));
  }
  lua_pop(L, 1);
  return o;
}

double read_timeout(lua_State* L, int idx, const char* fn) {
  if (!lua_istable(L, idx)) return -1;
  lua_getfield(L, idx, "timeout_s");
  double t = -1;
  if (lua_isnumber(L, -1)) {
    t = lua_tonumber(L, -1);
    if (t < 0) throw std::runtime_error(field_name(fn, "timeout_s must be >= 0"));
  } else if (!lua_isnil(L, -1)) {
    throw std::runtime_error(field_name(fn, "timeout_s must be a number"));
  }
  lua_pop(L, 1);
  return t;
}

void push_result(lua_State* L, const flare::proc::Result& r) {
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, r.status);
  lua_setfield(L, -2, "status");
  lua_pushinteger(L, r.signal);
  lua_setfield(L, -2, "signal");
  lua_pushboolean(L, r.timed_out);
  lua_setfield(L, -2, "timed_out");
  lua_pushlstring(L, r.out.data(), r.out.size());
  lua_setfield(L, -2, "stdout");
  lua_pushlstring(L, r.err.data(), r.err.size());
  lua_setfield(L, -2, "stderr");
}

int l_run(lua_State* L) {
  auto opts = read_options(L, "proc.run");
  double timeout = read_timeout(L, 1, "proc.run");
  flare::proc::Result r;
  {
    flare::proc::Child child(opts);
    r = child.wait(timeout);
  }
  push_result(L, r);
  return 1;
}

flare::proc::Child& check_child(lua_State* L) {
  auto* box = static_cast<ChildBox*>(luaL_checkudata(L, 1, kChildMeta));
  if (!box->child) throw std::runtime_error("proc: this child was already waited for");
  return *box->child;
}

int l_spawn(lua_State* L) {
  auto opts = read_options(L, "proc.spawn");
  auto child = std::make_unique<flare::proc::Child>(opts);
  auto* box = static_cast<ChildBox*>(lua_newuserdata(L, sizeof(ChildBox)));
  box->child = child.release();
  luaL_getmetatable(L, kChildMeta);
  lua_setmetatable(L, -2);
  return 1;
}

int child_pid(lua_State* L) {
  lua_pushinteger(L, check_child(L).pid());
  return 1;
}

int child_running(lua_State* L) {
  auto* box = static_cast<ChildBox*>(luaL_checkudata(L, 1, kChildMeta));
  lua_pushboolean(L, box->child && box->child->running());
  return 1;
}

int child_kill(lua_State* L) {
  auto& c = check_child(L);
  int signo = SIGTERM;
  if (lua_type(L, 2) == LUA_TNUMBER) {
    signo = static_cast<int>(lua_tointeger(L, 2));
  } else if (lua_type(L, 2) == LUA_TSTRING) {
    std::string s = lua_tostring(L, 2);
    if (s.rfind("SIG", 0) == 0) s = s.substr(3);
    if (s == "INT")
      signo = SIGINT;
    else if (s == "TERM")
      signo = SIGTERM;
    else if (s == "KILL")
      signo = SIGKILL;
    else if (s == "HUP")
      signo = SIGHUP;
    else if (s == "QUIT")
      signo = SIGQUIT;
    else
      throw std::runtime_error("proc: unknown signal '" + s + "' (INT, TERM, KILL, HUP, QUIT)");
  } else if (!lua_isnoneornil(L, 2)) {
    throw std::runtime_error("proc: the signal must be a name or a number");
  }
  c.kill_group(signo);
  return 0;
}

int child_wait(lua_State* L) {
  auto* box = static_cast<ChildBox*>(luaL_checkudata(L, 1, kChildMeta));
  if (!box->child) throw std::runtime_error("proc: this child was already waited for");
  double timeout = read_timeout(L, 2, "child:wait");
  flare::proc::Result r = box->child->wait(timeout);
  delete box->child;
  box->child = nullptr;
  push_result(L, r);
  return 1;
}

int child_gc(lua_State* L) {
  auto* box = static_cast<ChildBox*>(luaL_checkudata(L, 1, kChildMeta));
  delete box->child;
  box->child = nullptr;
  return 0;
}

int open_proc(lua_State* L) {
  luaL_newmetatable(L, kChildMeta);
  lua_pushcfunction(L, child_gc);
  lua_setfield(L, -2, "__gc");
  lua_createtable(L, 0, 4);
  const luaL_Reg methods[] = {
      {"pid", child_pid},   {"running", child_running}, {"kill", child_kill},
      {"wait", child_wait}, {nullptr, nullptr},
  };
  luaL_register(L, nullptr, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, l_run);
  lua_setfield(L, -2, "run");
  lua_pushcfunction(L, l_spawn);
  lua_setfield(L, -2, "spawn");
  return 1;
}

}  // namespace
}  // namespace flare::lua

FLARE_LUA_MODULE(proc, flare::lua::open_proc);
