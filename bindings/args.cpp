// flare.args: the bindings' argument checks for Lua code, so a stdlib module
// (or a user's) raises the same structured error as the C++ functions do.
//   args.check(value, want, who, name) -> value
//     want: "string" | "number" | "integer" | "boolean" | "table" | "function" | "nil" | ...,
//     alternatives joined with "|" ("string|table", "nil|number")
//   args.options(opts, spec, who) -> opts (or {} for nil)
//     spec = {name = want, ...}; an unknown name raises with a did-you-mean
//   args.wrap(fn, who, params) -> fn with its arguments checked before each call;
//     params: a list of "name:want" strings and {name, spec} option tables
//   args.checked(M, prefix, {fname = params, ...}) -> M with those functions wrapped,
//     each named prefix .. "." .. fname in errors
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

// Checks the options table at opts against the spec {name = want} at spec.
void check_options(lua_State* L, int opts, int spec, const char* who) {
  Options o(L, opts, who, false);
  // The spec's keys outlive the reader: the spec table stays on the stack.
  lua_pushnil(L);
  while (lua_next(L, spec) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
      raise_invalid("flare.args", "a spec must map option names to type names");
    const char* key = lua_tostring(L, -2);
    std::string_view want = lua_tostring(L, -1);
    o.push_any(key);
    if (!lua_isnil(L, -1) && !has_type(L, -1, want)) {
      o.invalid(key, "must be " + expected_text(want) + ", got " + type_of(L, -1));
    }
    lua_pop(L, 2);
  }
  o.finish();
}

int l_options(lua_State* L) {
  const char* fn = "flare.args.options";
  // A wrong options table is the caller's caller's misuse: named by `who`.
  std::string who = lua_type(L, 3) == LUA_TSTRING ? lua_tostring(L, 3) : fn;
  if (!lua_isnoneornil(L, 1)) check_table(L, 1, who.c_str(), "opts");
  check_table(L, 2, fn, "spec");
  check_string(L, 3, fn, "who");
  lua_settop(L, 3);
  check_options(L, 1, 2, who.c_str());
  if (lua_isnil(L, 1)) {
    lua_newtable(L);
  } else {
    lua_pushvalue(L, 1);
  }
  return 1;
}

// The function made by wrap; upvalues: the function, its name, the parameter
// names and what each must be (a type list, or an options spec table).
int checked_call(lua_State* L) {
  int n = lua_gettop(L);
  const char* who = lua_tostring(L, lua_upvalueindex(2));
  int count = static_cast<int>(lua_objlen(L, lua_upvalueindex(3)));
  if (count > n) lua_settop(L, count);  // absent arguments read as nil
  for (int i = 1; i <= count; ++i) {
    lua_rawgeti(L, lua_upvalueindex(4), i);
    if (lua_istable(L, -1)) {
      check_options(L, i, lua_gettop(L), who);
    } else if (!has_type(L, i, lua_tostring(L, -1))) {
      std::string want = lua_tostring(L, -1);
      lua_rawgeti(L, lua_upvalueindex(3), i);
      raise_invalid(who, std::string("argument '") + lua_tostring(L, -1) + "' must be " +
                             expected_text(want) + ", got " + type_of(L, i));
    }
    lua_pop(L, 1);
  }
  lua_settop(L, n);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L);
}

// Pushes fn (at idx) wrapped so that its arguments are checked first.
// params: a list of "name:want" strings and {name, spec} options tables.
void push_checked(lua_State* L, int fn, const char* who, int params) {
  const char* me = "flare.args.wrap";
  int count = static_cast<int>(lua_objlen(L, params));
  lua_pushvalue(L, fn);
  lua_pushstring(L, who);
  lua_createtable(L, count, 0);
  lua_createtable(L, count, 0);
  for (int i = 1; i <= count; ++i) {
    lua_rawgeti(L, params, i);
    if (lua_type(L, -1) == LUA_TSTRING) {
      std::string entry = lua_tostring(L, -1);
      size_t colon = entry.find(':');
      if (colon == std::string::npos)
        raise_invalid(me, std::string(who) + ": parameter '" + entry + "' needs a ':type'");
      lua_pushlstring(L, entry.data(), colon);
      lua_rawseti(L, -4, i);
      lua_pushstring(L, entry.c_str() + colon + 1);
      lua_rawseti(L, -3, i);
    } else if (lua_istable(L, -1)) {
      lua_rawgeti(L, -1, 1);
      lua_rawseti(L, -4, i);
      lua_rawgeti(L, -1, 2);
      if (!lua_istable(L, -1))
        raise_invalid(me, std::string(who) + ": an options parameter is {name, spec}");
      lua_rawseti(L, -3, i);
    } else {
      raise_invalid(me, std::string(who) + ": parameters are \"name:type\" or {name, spec}");
    }
    lua_pop(L, 1);
  }
  lua_pushcclosure(L, checked_call, 4);
}

int l_wrap(lua_State* L) {
  const char* fn = "flare.args.wrap";
  check_function(L, 1, fn, "fn");
  std::string who(check_string(L, 2, fn, "who"));
  check_table(L, 3, fn, "params");
  push_checked(L, 1, who.c_str(), 3);
  return 1;
}

// checked(M, prefix, signatures): M's functions named in signatures, wrapped.
int l_checked(lua_State* L) {
  const char* fn = "flare.args.checked";
  check_table(L, 1, fn, "module");
  std::string prefix(check_string(L, 2, fn, "prefix"));
  check_table(L, 3, fn, "signatures");
  lua_pushnil(L);
  while (lua_next(L, 3) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING || !lua_istable(L, -1))
      raise_invalid(fn, prefix + ": signatures map function names to parameter lists");
    std::string name = lua_tostring(L, -2);
    lua_getfield(L, 1, name.c_str());
    if (!lua_isfunction(L, -1))
      raise_invalid(fn, prefix + "." + name + " has a signature but is not a function");
    push_checked(L, lua_gettop(L), (prefix + "." + name).c_str(), lua_gettop(L) - 1);
    lua_setfield(L, 1, name.c_str());
    lua_pop(L, 2);
  }
  lua_settop(L, 1);
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
  static const luaL_Reg functions[] = {
      {"check", l_check},     {"options", l_options}, {"did_you_mean", l_did_you_mean},
      {"invalid", l_invalid}, {"wrap", l_wrap},       {"checked", l_checked},
      {nullptr, nullptr}};
  push_functions(L, functions);
  return 1;
}

}  // namespace
}  // namespace flare::lua

FLARE_LUA_MODULE(args, flare::lua::open_args);
