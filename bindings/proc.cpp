// flare.proc: child processes without a shell.
//   proc.run{argv = {...}, stdin =, timeout_s =, env = {K = V}, clear_env =, cwd =}
//     -> {status =, signal =, stdout =, stderr =, timed_out =}
//   proc.spawn{...same options...} -> child with child:pid(), child:kill(sig),
//     child:running(), child:wait{timeout_s =} -> the same result table
// The child gets its own process group; timeouts and Ctrl-C kill the whole group.
#include <signal.h>

#include <lua.hpp>
#include <memory>
#include <string>

#include "lua_support.hpp"
#include "module.hpp"
#include "runtime/subprocess.hpp"

namespace flare::lua {
namespace {

const char* const kChildMeta = "flare.proc.child";

struct ChildBox {
  flare::proc::Child* child;
};

// Reads the options of run and spawn; *timeout_s gets timeout_s (-1 when absent).
flare::proc::SpawnOptions read_options(lua_State* L, const char* who, double* timeout_s) {
  Options o(L, 1, who);
  flare::proc::SpawnOptions so;
  if (!o.push_table("argv")) o.missing("argv", "a list of strings");
  int n = static_cast<int>(lua_objlen(L, -1));
  if (n == 0) o.invalid("argv", "must not be empty");
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER) {
      raise_invalid(
          who, "option 'argv[" + std::to_string(i) + "]' must be a string, got " + type_of(L, -1));
    }
    size_t len;
    const char* s = lua_tolstring(L, -1, &len);
    so.argv.emplace_back(s, len);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  so.stdin_data = o.opt_string("stdin");
  if (auto env = o.string_map("env"))
    for (auto& [k, v] : *env) so.env[k] = std::move(v);
  so.clear_env = o.boolean("clear_env", false);
  so.cwd = o.string("cwd", "");
  *timeout_s = o.number("timeout_s", -1, 0);
  o.finish();
  return so;
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
  double timeout = -1;
  auto opts = read_options(L, "flare.proc.run", &timeout);
  flare::proc::Result r;
  {
    flare::proc::Child child(opts);
    r = child.wait(timeout);
  }
  push_result(L, r);
  return 1;
}

flare::proc::Child& check_child(lua_State* L, const char* who) {
  auto& box = check_udata<ChildBox>(L, 1, kChildMeta, who);
  if (!box.child) raise_invalid(who, "this child was already waited for");
  return *box.child;
}

int l_spawn(lua_State* L) {
  double unused_timeout = -1;
  auto opts = read_options(L, "flare.proc.spawn", &unused_timeout);
  auto child = std::make_unique<flare::proc::Child>(opts);
  push_udata<ChildBox>(L, kChildMeta).child = child.release();
  return 1;
}

int child_pid(lua_State* L) {
  lua_pushinteger(L, check_child(L, "child:pid").pid());
  return 1;
}

int child_running(lua_State* L) {
  auto& box = check_udata<ChildBox>(L, 1, kChildMeta, "child:running");
  lua_pushboolean(L, box.child && box.child->running());
  return 1;
}

int child_kill(lua_State* L) {
  const char* who = "child:kill";
  auto& c = check_child(L, who);
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
      raise_invalid(who, "argument 'signal' must be INT, TERM, KILL, HUP or QUIT, got '" + s + "'");
  } else if (!lua_isnoneornil(L, 2)) {
    raise_invalid(who, "argument 'signal' must be a name or a number, got " + type_of(L, 2));
  }
  c.kill_group(signo);
  return 0;
}

int child_wait(lua_State* L) {
  const char* who = "child:wait";
  auto& child = check_child(L, who);
  Options o(L, 2, who, false);
  double timeout = o.number("timeout_s", -1, 0);
  o.finish();
  flare::proc::Result r = child.wait(timeout);
  auto& box = check_udata<ChildBox>(L, 1, kChildMeta, who);
  delete box.child;
  box.child = nullptr;
  push_result(L, r);
  return 1;
}

int child_gc(lua_State* L) {
  auto* box = static_cast<ChildBox*>(lua_touserdata(L, 1));
  delete box->child;
  box->child = nullptr;
  return 0;
}

int open_proc(lua_State* L) {
  static const luaL_Reg methods[] = {
      {"pid", child_pid},   {"running", child_running}, {"kill", child_kill},
      {"wait", child_wait}, {nullptr, nullptr},
  };
  register_class(L, kChildMeta, methods, child_gc);
  static const luaL_Reg functions[] = {{"run", l_run}, {"spawn", l_spawn}, {nullptr, nullptr}};
  push_functions(L, functions);
  return 1;
}

}  // namespace
}  // namespace flare::lua

FLARE_LUA_MODULE(proc, flare::lua::open_proc);
