// push_json / to_json: the DOM side of the Lua <-> JSON rules that other
// bindings use (flare.json's own text paths are covered by tests/lua/json_spec.lua).
#include "json_convert.hpp"

#include <doctest/doctest.h>

#include <lua.hpp>
#include <memory>
#include <stdexcept>
#include <string>

using nlohmann::json;

namespace {

struct LuaState {
  lua_State* L = luaL_newstate();
  LuaState() { luaL_openlibs(L); }
  ~LuaState() { lua_close(L); }
};

// Runs `code` with the value on the stack top as `...`; returns its string result.
std::string eval(lua_State* L, const char* code) {
  REQUIRE(luaL_loadstring(L, code) == 0);
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 1, 0) != 0) FAIL(lua_tostring(L, -1));
  std::string out = lua_tostring(L, -1);
  lua_pop(L, 1);
  return out;
}

std::string thrown_by_to_json(lua_State* L, const char* code) {
  REQUIRE(luaL_dostring(L, code) == 0);
  try {
    flare::lua::to_json(L, -1);
  } catch (const std::runtime_error& e) {
    lua_pop(L, 1);
    return e.what();
  }
  lua_pop(L, 1);
  return "";
}

}  // namespace

TEST_CASE("push_json builds Lua values and to_json reads them back unchanged") {
  LuaState s;
  json doc = json::parse(R"({"a": [1, 2.5, "x", null, true], "big": 1152921504606846977,
    "max": 18446744073709551615, "min": -9223372036854775808, "list": [], "obj": {}})");
  flare::lua::push_json(s.L, doc);
  CHECK(lua_gettop(s.L) == 1);
  lua_pushvalue(s.L, 1);
  CHECK(eval(s.L, R"(local v = ...; local ffi = require("ffi")
    return table.concat({type(v.a[1]), v.a[3], tostring(v.a[5]), tostring(#v.list),
      tostring(ffi.istype("int64_t", v.big)), tostring(ffi.istype("uint64_t", v.max))}, ","))") ==
        "number,x,true,0,true,true");
  json back = flare::lua::to_json(s.L, 1);
  CHECK(back == doc);
  CHECK(back["list"].is_array());
  CHECK(back["obj"].is_object());
  CHECK(back["a"][3].is_null());
}

TEST_CASE("the null sentinel is recognised on both sides") {
  LuaState s;
  flare::lua::push_json(s.L, json(nullptr));
  CHECK(flare::lua::is_json_null(s.L, -1));
  CHECK(flare::lua::to_json(s.L, -1).is_null());
  lua_pushnil(s.L);
  CHECK(flare::lua::to_json(s.L, -1).is_null());
}

TEST_CASE("to_json follows the table rules and names the path of bad values") {
  LuaState s;
  REQUIRE(luaL_dostring(s.L, "return {}") == 0);
  CHECK(flare::lua::to_json(s.L, -1) == json::array());
  lua_pop(s.L, 1);
  REQUIRE(luaL_dostring(s.L, "return {n = 3, xs = {1, 2}, f = 1.5}") == 0);
  CHECK(flare::lua::to_json(s.L, -1) == json::parse(R"({"n": 3, "xs": [1, 2], "f": 1.5})"));
  CHECK(flare::lua::to_json(s.L, -1)["n"].is_number_integer());
  lua_pop(s.L, 1);

  CHECK(thrown_by_to_json(s.L, "local t = {}; t.me = t; return {a = t}") ==
        "to_json: cannot encode a table that contains itself (cycle) at $.a.me");
  CHECK(thrown_by_to_json(s.L, "return {x = {0/0}}") == "to_json: cannot encode NaN at $.x[1]");
  CHECK(thrown_by_to_json(s.L, "return {1, nil, 3}").find("sparse array") != std::string::npos);
  CHECK(thrown_by_to_json(s.L, "return {f = print}") == "to_json: cannot encode a function at $.f");
}

TEST_CASE("set_json_kind marks empty tables for to_json") {
  LuaState s;
  lua_newtable(s.L);
  flare::lua::set_json_kind(s.L, -1, flare::lua::JsonKind::object);
  CHECK(flare::lua::json_kind(s.L, -1) == flare::lua::JsonKind::object);
  CHECK(flare::lua::to_json(s.L, -1) == json::object());
}

TEST_CASE("push_json refuses nesting deeper than the limit") {
  LuaState s;
  json deep = json::array();
  for (int i = 0; i < flare::lua::kJsonMaxDepth; ++i) deep = json::array({deep});
  CHECK_THROWS_AS(flare::lua::push_json(s.L, deep), flare::lua::JsonTooDeep);
}
