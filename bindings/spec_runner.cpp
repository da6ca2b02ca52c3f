#include "spec_runner.hpp"

#include <cstdio>
#include <filesystem>
#include <lua.hpp>

#include "error_boundary.hpp"
#include "host.hpp"

namespace flare::lua {

SpecCounts run_spec_file(const std::string& path, bool verbose) {
  SpecCounts counts;
  Host host(std::filesystem::path(path).parent_path().string());
  lua_State* L = host.state();
  lua_getglobal(L, "require");
  lua_pushstring(L, "flare.test");
  if (lua_pcall(L, 1, 1, 0) != 0) {
    std::fprintf(stderr, "flare: cannot load the spec runner: %s\n", describe_error(L, -1).c_str());
    counts.failed = 1;
    return counts;
  }
  lua_getfield(L, -1, "run_file");
  lua_pushstring(L, path.c_str());
  lua_createtable(L, 0, 1);
  lua_pushboolean(L, verbose);
  lua_setfield(L, -2, "verbose");
  if (lua_pcall(L, 2, 3, 0) != 0) {
    std::printf("FAIL %s: %s\n", path.c_str(), describe_error(L, -1).c_str());
    counts.failed = 1;
  } else {
    counts.passed = static_cast<int>(lua_tointeger(L, -3));
    counts.failed = static_cast<int>(lua_tointeger(L, -2));
    counts.skipped = static_cast<int>(lua_tointeger(L, -1));
  }
  lua_settop(L, 0);
  if (host.run_cleanups("exit") > 0) counts.failed++;
  return counts;
}

}  // namespace flare::lua
