// libFuzzer target: flare.json.decode (bindings/json.cpp, json_convert.cpp) on
// any bytes, through the Lua API as scripts call it. Whatever decodes must
// encode (unless it holds a value JSON cannot carry back, which raises), and
// the encoded text must decode and encode to the same text again. decode_lines gives
// the values decode gives for each line (run from build-fuzz/, simdjson
// parses through libflare-simdjson.so there, and the exact parser what it refuses).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <lua.hpp>
#include <string>
#include <vector>

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

// The value's text with sorted keys, or "" when it does not encode.
std::string sorted_text(lua_State* L, int idx) {
  if (!call(L, "encode", idx, false, true)) return "";
  std::string out = lua_tostring(L, -1);
  lua_pop(L, 1);
  return out;
}

// decode_lines of the whole text against decode of each line that is not blank: it
// succeeds when every such line decodes, with their values in order (lines are parsed
// ahead in batches; a line simdjson refuses ends a batch).
void check_decode_lines(lua_State* L, const uint8_t* data, size_t size) {
  int top = lua_gettop(L);
  std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> want;
  bool all = true;
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    start = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    lua_pushlstring(L, line.data(), line.size());
    if (!call(L, "decode", -1)) {
      all = false;
      break;
    }
    want.push_back(sorted_text(L, -1));
    lua_settop(L, top);
  }
  lua_settop(L, top);
  bool lines = call(L, "decode_lines", 1);
  if (lines != all) std::abort();
  if (lines) {
    if (lua_objlen(L, -1) != want.size()) std::abort();
    for (size_t i = 0; i < want.size(); ++i) {
      lua_rawgeti(L, -1, static_cast<int>(i) + 1);
      if (sorted_text(L, -1) != want[i]) std::abort();
      lua_pop(L, 1);
    }
  }
  lua_settop(L, top);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lua_State* L = state();
  lua_settop(L, 0);
  lua_pushlstring(L, reinterpret_cast<const char*>(data), size);
  check_decode_lines(L, data, size);
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
