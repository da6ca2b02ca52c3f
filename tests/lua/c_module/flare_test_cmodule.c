/* A Lua C module as users build them (luarocks-style), loaded by `require`
 * in c_module_spec.lua: the flare program must export the Lua C API. */
#include <lauxlib.h>
#include <lua.h>

static int add(lua_State* L) {
  lua_pushnumber(L, luaL_checknumber(L, 1) + luaL_checknumber(L, 2));
  return 1;
}

static int fail(lua_State* L) {
  return luaL_error(L, "failed inside a C module: %s", luaL_checkstring(L, 1));
}

int luaopen_flare_test_cmodule(lua_State* L) {
  lua_newtable(L);
  lua_pushcfunction(L, add);
  lua_setfield(L, -2, "add");
  lua_pushcfunction(L, fail);
  lua_setfield(L, -2, "fail");
  return 1;
}
