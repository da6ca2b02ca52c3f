// libFuzzer target: flare.json.decode (bindings/json.cpp, json_convert.cpp) on
// any bytes, through the Lua API as scripts call it. Whatever decodes must
// encode (unless it holds a value JSON cannot carry back, which raises), and
// the encoded text must decode and encode to the same text again.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <lua.hpp>
#include <string>

#include "error_boundary.hpp"
#include "module.hpp"

using namespace flare::lua;

namespace {

lua_State* state() {
  static lua_State* L = [] {
    lua_State* s = luaL_newstate();
    luaL_openlibs(s);
    install_error_boundary(s);
    for (const auto& m : registered_modules())
      if (std::strcmp(m.name, "json") == 0) {
        lua_pushcfunction(s, m.open);
        lua_call(s, 0, 1);
        lua_setglobal(s, "json");
      }
    return s;
  }();
  return L;
}

// json.<fn>(arg at idx[, opts]) -> true and the result on the stack, or false.
bool call(lua_State* L, const char* fn, int idx, bool pretty = false, bool sort_keys = false) {
  if (idx < 0) idx = lua_gettop(L) + 1 + idx;  // Lua 5.1 has no lua_absindex
  lua_getglobal(L, "json");
  lua_getfield(L, -1, fn);
  lua_remove(L, -2);
  lua_pushvalue(L, idx);
  int nargs = 1;
  if (pretty || sort_keys) {
    lua_createtable(L, 0, 2);
    lua_pushboolean(L, pretty);
    lua_setfield(L, -2, "pretty");
    lua_pushboolean(L, sort_keys);
    lua_setfield(L, -2, "sort_keys");
    nargs = 2;
  }
  if (lua_pcall(L, nargs, 1, 0) != 0) {
    // Every failure is a Lua error with a message, never a crash.
    if (!lua_isstring(L, -1) && !lua_istable(L, -1)) std::abort();
    lua_pop(L, 1);
    return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lua_State* L = state();
  lua_settop(L, 0);
  lua_pushlstring(L, reinterpret_cast<const char*>(data), size);
  if (call(L, "decode", 1)) {
    bool pretty = size > 0 && (data[0] & 1);
    bool encodes = call(L, "encode", 2, pretty, true);
    if (call(L, "encode", 2, pretty, false) != encodes) std::abort();
    if (encodes) {
      // Sorted keys: the text does not depend on the order pairs() visits them in.
      std::string first = lua_tostring(L, 3);
      if (!call(L, "decode", 3)) std::abort();
      if (!call(L, "encode", -1, pretty, true)) std::abort();
      if (first != lua_tostring(L, -1)) std::abort();
    }
  }
  lua_settop(L, 0);
  static unsigned calls = 0;
  if (++calls % 256 == 0) lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}
