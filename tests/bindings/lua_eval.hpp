#pragma once
// Runs a chunk in a Host's state with pcall; returns "" on success or the error text.
#include <lua.hpp>
#include <string>

#include "error_boundary.hpp"
#include "host.hpp"

inline std::string eval(flare::lua::Host& host, const std::string& code) {
  lua_State* L = host.state();
  if (luaL_loadstring(L, code.c_str()) != 0 || lua_pcall(L, 0, 0, 0) != 0) {
    std::string err = flare::lua::describe_error(L, -1);
    lua_pop(L, 1);
    return err.empty() ? "(empty error)" : err;
  }
  return "";
}

inline std::string global_string(flare::lua::Host& host, const char* name) {
  lua_State* L = host.state();
  lua_getglobal(L, name);
  std::string s = lua_isstring(L, -1) ? lua_tostring(L, -1) : "";
  lua_pop(L, 1);
  return s;
}
