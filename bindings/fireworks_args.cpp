#include "fireworks_args.hpp"

#include <cmath>

#include "runtime/error.hpp"

namespace flare::lua::fwargs {
namespace {

[[noreturn]] void wrong(const char* who, const std::string& field, const char* expected,
                        lua_State* L, int idx) {
  throw flare::Error("invalid_argument", std::string(who) + ": option '" + field + "' must be " +
                                             expected + ", got " + luaL_typename(L, idx));
}

}  // namespace

std::optional<std::string> opt_string(lua_State* L, int t, const char* field, const char* who) {
  lua_getfield(L, t, field);
  std::optional<std::string> out;
  if (lua_type(L, -1) == LUA_TSTRING) {
    size_t n = 0;
    const char* s = lua_tolstring(L, -1, &n);
    out.emplace(s, n);
  } else if (!lua_isnil(L, -1)) {
    wrong(who, field, "a string", L, -1);
  }
  lua_pop(L, 1);
  return out;
}

std::optional<double> opt_number(lua_State* L, int t, const char* field, const char* who) {
  lua_getfield(L, t, field);
  std::optional<double> out;
  if (lua_type(L, -1) == LUA_TNUMBER) {
    out = lua_tonumber(L, -1);
  } else if (!lua_isnil(L, -1)) {
    wrong(who, field, "a number", L, -1);
  }
  lua_pop(L, 1);
  return out;
}

std::optional<long long> opt_integer(lua_State* L, int t, const char* field, const char* who) {
  auto v = opt_number(L, t, field, who);
  if (!v) return std::nullopt;
  if (*v != std::floor(*v) || std::fabs(*v) > 9.007199254740992e15) {
    throw flare::Error("invalid_argument", std::string(who) + ": option '" + field +
                                               "' must be an integer, got " + std::to_string(*v));
  }
  return static_cast<long long>(*v);
}

std::optional<bool> opt_bool(lua_State* L, int t, const char* field, const char* who) {
  lua_getfield(L, t, field);
  std::optional<bool> out;
  if (lua_type(L, -1) == LUA_TBOOLEAN) {
    out = lua_toboolean(L, -1) != 0;
  } else if (!lua_isnil(L, -1)) {
    wrong(who, field, "a boolean", L, -1);
  }
  lua_pop(L, 1);
  return out;
}

std::optional<std::vector<std::string>> opt_strings(lua_State* L, int t, const char* field,
                                                    const char* who) {
  lua_getfield(L, t, field);
  std::optional<std::vector<std::string>> out;
  if (lua_type(L, -1) == LUA_TSTRING) {
    out.emplace().push_back(lua_tostring(L, -1));
  } else if (lua_istable(L, -1)) {
    out.emplace();
    int n = static_cast<int>(lua_objlen(L, -1));
    for (int i = 1; i <= n; ++i) {
      lua_rawgeti(L, -1, i);
      if (lua_type(L, -1) != LUA_TSTRING) {
        wrong(who, std::string(field) + "[" + std::to_string(i) + "]", "a string", L, -1);
      }
      out->push_back(lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  } else if (!lua_isnil(L, -1)) {
    wrong(who, field, "a string or a list of strings", L, -1);
  }
  lua_pop(L, 1);
  return out;
}

std::vector<int> int_list(lua_State* L, int idx, const std::string& what) {
  std::vector<int> out;
  int n = static_cast<int>(lua_objlen(L, idx));
  out.reserve(static_cast<size_t>(n));
  for (int i = 1; i <= n; ++i) {
    lua_rawgeti(L, idx, i);
    if (lua_type(L, -1) != LUA_TNUMBER) {
      throw flare::Error("invalid_argument", what + "[" + std::to_string(i) +
                                                 "] must be a token id (integer), got " +
                                                 luaL_typename(L, -1));
    }
    double v = lua_tonumber(L, -1);
    if (v != std::floor(v) || v < 0 || v > 2147483647.0) {
      throw flare::Error("invalid_argument", what + "[" + std::to_string(i) +
                                                 "] must be a non-negative integer token id");
    }
    out.push_back(static_cast<int>(v));
    lua_pop(L, 1);
  }
  return out;
}

}  // namespace flare::lua::fwargs
