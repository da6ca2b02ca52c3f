#pragma once
// LuaJIT's string table, helped along when the LuaJIT that flare links has the helpers
// (tools/luajit/string-table.patch; dev.sh builds that LuaJIT). Against another LuaJIT
// (the sanitizer builds link Debian's shared library) they do nothing.
#include <cstddef>
#include <lua.hpp>

extern "C" {
void luaJIT_flare_prefetch_strings(lua_State* L, const char* const* str, const std::size_t* len,
                                   std::size_t n) __attribute__((weak));
void luaJIT_flare_reserve_strings(lua_State* L, std::size_t n) __attribute__((weak));
}

namespace flare::lua {

// Lets LuaJIT fetch the string-table entries that interning str[i] (len[i] bytes each)
// will read, all at once: the lookups that follow then rarely wait for memory.
inline void prefetch_strings(lua_State* L, const char* const* str, const std::size_t* len,
                             std::size_t n) {
  if (luaJIT_flare_prefetch_strings) luaJIT_flare_prefetch_strings(L, str, len, n);
}

// Grows the string table once for n more strings, instead of once per doubling.
inline void reserve_strings(lua_State* L, std::size_t n) {
  if (luaJIT_flare_reserve_strings) luaJIT_flare_reserve_strings(L, n);
}

}  // namespace flare::lua
