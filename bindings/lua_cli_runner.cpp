#include "lua_cli_runner.hpp"

#include <cstdio>
#include <lua.hpp>

#include "error_boundary.hpp"
#include "host.hpp"

namespace flare::lua {

int run_lua_cli(const char* command, const char* module, int argc, char** argv) {
  Host host;
  lua_State* L = host.state();
  int status = 0;
  lua_getglobal(L, "require");
  lua_pushstring(L, module);
  if (lua_pcall(L, 1, 1, 0) != 0) {
    std::fprintf(stderr, "flare: %s: %s\n", command, describe_error(L, -1).c_str());
    status = 1;
  } else {
    lua_createtable(L, argc, 0);
    for (int i = 1; i < argc; i++) {
      lua_pushstring(L, argv[i]);
      lua_rawseti(L, -2, i);
    }
    if (lua_pcall(L, 1, 1, 0) != 0) {
      std::fprintf(stderr, "flare: %s: %s\n", command, describe_error(L, -1).c_str());
      status = error_code(L, -1) == "usage" ? 2 : 1;
    } else if (lua_isnumber(L, -1)) {
      status = static_cast<int>(lua_tointeger(L, -1));
    }
  }
  std::fflush(stdout);
  lua_settop(L, 0);
  if (host.run_cleanups(status == 0 ? "exit" : "error") > 0 && status == 0) status = 1;
  return status;
}

}  // namespace flare::lua
