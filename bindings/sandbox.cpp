// flare.sandbox_native: the C++ half of flare.sandbox (stdlib/flare/sandbox.lua).
//   check_path(path, mode, roots) -> canonical path, or raises sandbox_denied (mode "r" | "w")
//   exists(path)                   -> whether it exists, policies aside (require's search)
//   protected_run(f, ...)          -> f's results; limits reached become sandbox_limit errors
//   new_policy{prefixes=, read=, write=, time_limit_s=} -> id of a policy for flare.sandbox.require
//   scope_call(id, f, ...)         -> f's results, called with that policy in force
//   process_config()               -> what `flare run --sandbox` granted, or nil
//   landlock_abi()                 -> the kernel's Landlock ABI version, 0 when none
#include <deque>
#include <filesystem>
#include <lua.hpp>
#include <string>
#include <vector>

#include "error_boundary.hpp"
#include "host.hpp"
#include "lua_support.hpp"
#include "module.hpp"
#include "runtime/landlock.hpp"
#include "sandbox_config.hpp"
#include "sandbox_limits.hpp"
#include "sandbox_policy.hpp"

namespace flare::sandbox {

ProcessConfig& process_config() {
  static ProcessConfig c;
  return c;
}

namespace {
namespace fs = std::filesystem;

struct RequirePolicy {
  Policy policy;
  double time_limit_s = 0;
};
std::deque<RequirePolicy> g_policies;  // flare.sandbox.require's, alive for the process

std::vector<std::string> string_list(lua_State* L, int idx) {
  std::vector<std::string> out;
  size_t n = lua_objlen(L, idx);
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, static_cast<int>(i));
    if (lua_type(L, -1) == LUA_TSTRING) out.emplace_back(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return out;
}

int l_check_path(lua_State* L) {
  const char* who = "flare.sandbox_native.check_path";
  std::string path(flare::lua::check_string(L, 1, who, "path"));
  std::string mode(flare::lua::check_string(L, 2, who, "mode"));
  flare::lua::check_table(L, 3, who, "roots");
  std::string real = resolve_within(path, mode == "w", string_list(L, 3));
  lua_pushlstring(L, real.data(), real.size());
  return 1;
}

// Whether something exists at path (any policy aside: require reports where it resolves).
int l_exists(lua_State* L) {
  std::error_code ec;
  lua_pushboolean(
      L,
      fs::exists(std::string(flare::lua::check_string(L, 1, "flare.sandbox_native.exists", "path")),
                 ec));
  return 1;
}

int l_new_policy(lua_State* L) {
  flare::lua::Options o(L, 1, "flare.sandbox_native.new_policy");
  RequirePolicy rp;
  Policy& p = rp.policy;
  rp.time_limit_s = o.number("time_limit_s", 0, 0);
  for (auto [key, list] : {std::pair{"prefixes", &p.prefixes}, std::pair{"read", &p.read_roots},
                           std::pair{"write", &p.write_roots}}) {
    if (o.push_table(key)) {
      *list = string_list(L, lua_gettop(L));
      lua_pop(L, 1);
    }
  }
  o.finish();
  p.origins = configured_origins();
  note_sandbox_created();
  g_policies.push_back(std::move(rp));
  lua_pushinteger(L, static_cast<lua_Integer>(g_policies.size()));
  return 1;
}

int l_scope_call(lua_State* L) {
  auto id = flare::lua::check_integer(L, 1, "flare.sandbox_native.scope_call", "id", 1,
                                      static_cast<long long>(g_policies.size()));
  flare::lua::check_function(L, 2, "flare.sandbox_native.scope_call", "f");
  int nargs = lua_gettop(L) - 2;
  const RequirePolicy& rp = g_policies[static_cast<size_t>(id - 1)];
  int status;
  {
    Scope scope(&rp.policy);
    status = pcall_with_time_limit(L, nargs, rp.time_limit_s);
  }
  if (status != 0) return lua_error(L);
  return lua_gettop(L) - 1;
}

int l_process_config(lua_State* L) {
  const ProcessConfig& c = process_config();
  if (!c.active) return 0;
  lua_createtable(L, 0, 9);
  lua_pushstring(L, c.script.c_str());
  lua_setfield(L, -2, "script");
  lua_pushstring(L, c.script_dir.c_str());
  lua_setfield(L, -2, "script_dir");
  lua_pushstring(L, c.run_dir.c_str());
  lua_setfield(L, -2, "run_dir");
  flare::lua::push_strings(L, c.search);
  lua_setfield(L, -2, "search");
  flare::lua::push_strings(L, c.read_roots);
  lua_setfield(L, -2, "read");
  flare::lua::push_strings(L, c.write_roots);
  lua_setfield(L, -2, "write");
  flare::lua::push_strings(L, c.prefixes);
  lua_setfield(L, -2, "prefixes");
  lua_pushinteger(L, c.landlock_abi);
  lua_setfield(L, -2, "landlock_abi");
  lua_pushboolean(L, c.landlock_applied);
  lua_setfield(L, -2, "landlock");
  return 1;
}

int l_stdlib_dir(lua_State* L) {
  lua_pushstring(L, flare::lua::stdlib_dir().c_str());
  return 1;
}

int l_landlock_abi(lua_State* L) {
  lua_pushinteger(L, flare::landlock::abi_version());
  return 1;
}

int open_sandbox_native(lua_State* L) {
  static const luaL_Reg functions[] = {{"check_path", l_check_path},
                                       {"protected_run", protected_run},
                                       {"exists", l_exists},
                                       {"new_policy", l_new_policy},
                                       {"scope_call", l_scope_call},
                                       {"process_config", l_process_config},
                                       {"landlock_abi", l_landlock_abi},
                                       {"stdlib_dir", l_stdlib_dir},
                                       {nullptr, nullptr}};
  flare::lua::push_functions(L, functions);
  return 1;
}

}  // namespace
}  // namespace flare::sandbox

FLARE_LUA_MODULE(sandbox_native, flare::sandbox::open_sandbox_native);
