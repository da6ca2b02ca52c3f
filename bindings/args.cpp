// flare.args: the bindings' argument checks for Lua code, so a stdlib module
// (or a user's) raises the same structured error as the C++ functions do.
//   args.check(value, want, who, name) -> value
//     want: "string" | "number" | "integer" | "boolean" | "table" | "function" | "nil" | ...,
//     alternatives joined with "|" ("string|table", "nil|number")
//   args.options(opts, spec, who) -> opts (or {} for nil)
//     spec = {name = want, ...}; an unknown name raises with a did-you-mean
//   args.did_you_mean(name, candidates) -> the closest candidate or nil
//   args.invalid(who, message): raises {code = "invalid_argument", message = who .. ": " ..
//   message}
#include <cmath>
#include <string>
#include <vector>

#include "lua_support.hpp"
#include "module.hpp"

namespace flare::lua {
namespace {

bool has_type(lua_State* L, int idx, std::string_view want) {
  int t = lua_type(L, idx);
  while (!want.empty()) {
    size_t bar = want.find('|');
    std::string_view one = want.substr(0, bar);
    want = bar == std::string_view::npos ? std::string_view() : want.substr(bar + 1);
    if (one == "integer") {
      if (t == LUA_TNUMBER) {
        double v = lua_tonumber(L, idx);
        if (v == std::floor(v)) return true;
      }
    } else if (one == "function") {
      if (t == LUA_TFUNCTION) return true;
    } else if (one == lua_typename(L, t) || (one == "nil" && t == LUA_TNONE)) {
      return true;
    }
  }
  return false;
}

// "a string or a table", "an integer"
std::string expected_text(std::string_view want) {
  std::string out;
  while (!want.empty()) {
    size_t bar = want.find('|');
    std::string_view one = want.substr(0, bar);
    want = bar == std::string_view::npos ? std::string_view() : want.substr(bar + 1);
    if (!out.empty()) out += " or ";
    if (one == "nil") {
      out += "nil";
    } else {
      out += (one == "integer" ? "an " : "a ");
      out += one;
    }
  }
  return out;
}

int l_check(lua_State* L) {
  const char* fn = "flare.args.check";
  std::string want(check_string(L, 2, fn, "want"));
  std::string who(check_string(L, 3, fn, "who"));
  std::string name(check_string(L, 4, fn, "name"));
  if (!has_type(L, 1, want)) {
    raise_invalid(
        who, "argument '" + name + "' must be " + expected_text(want) + ", got " + type_of(L, 1));
  }
  lua_settop(L, 1);
  return 1;
}

int l_options(lua_State* L) {
  const char* fn = "flare.args.options";
  check_table(L, 2, fn, "spec");
  std::string who(check_string(L, 3, fn, "who"));
  lua_settop(L, 3);
  Options o(L, 1, who.c_str(), false);
  // The spec's keys outlive the reader: the spec table stays on the stack.
  lua_pushnil(L);
  while (lua_next(L, 2) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
      raise_invalid(fn, "argument 'spec' must map option names to type names");
    const char* key = lua_tostring(L, -2);
    std::string_view want = lua_tostring(L, -1);
    o.push_any(key);
    if (!lua_isnil(L, -1) && !has_type(L, -1, want)) {
      o.invalid(key, "must be " + expected_text(want) + ", got " + type_of(L, -1));
    }
    lua_pop(L, 2);
  }
  o.finish();
  if (!o.present())
    lua_newtable(L);
  else
    lua_pushvalue(L, 1);
  return 1;
}

int l_did_you_mean(lua_State* L) {
  const char* fn = "flare.args.did_you_mean";
  std::string_view name = check_string(L, 1, fn, "name");
  check_table(L, 2, fn, "candidates");
  std::vector<std::string_view> candidates;
  int n = static_cast<int>(lua_objlen(L, 2));
  for (int i = 1; i <= n; ++i) {
    lua_rawgeti(L, 2, i);
    if (lua_type(L, -1) == LUA_TSTRING) {
      size_t len = 0;
      const char* s = lua_tolstring(L, -1, &len);
      candidates.emplace_back(s, len);  // the table keeps the string alive
    }
    lua_pop(L, 1);
  }
  std::string hint = did_you_mean(name, candidates);
  if (hint.empty()) {
    lua_pushnil(L);
  } else {
    lua_pushlstring(L, hint.data(), hint.size());
  }
  return 1;
}

int l_invalid(lua_State* L) {
  const char* fn = "flare.args.invalid";
  std::string who(check_string(L, 1, fn, "who"));
  std::string message(check_string(L, 2, fn, "message"));
  raise_invalid(who, message);
}

int open_args(lua_State* L) {
  static const luaL_Reg functions[] = {{"check", l_check},
                                       {"options", l_options},
                                       {"did_you_mean", l_did_you_mean},
                                       {"invalid", l_invalid},
                                       {nullptr, nullptr}};
  push_functions(L, functions);
  return 1;
}

}  // namespace
}  // namespace flare::lua

FLARE_LUA_MODULE(args, flare::lua::open_args);
