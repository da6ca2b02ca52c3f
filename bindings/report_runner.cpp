#include "report_runner.hpp"

#include <cstdio>
#include <lua.hpp>

#include "error_boundary.hpp"
#include "host.hpp"

namespace flare::lua {

int run_report(const ReportRequest& request) {
  Host host;
  lua_State* L = host.state();
  lua_getglobal(L, "require");
  lua_pushstring(L, "flare.report");
  if (lua_pcall(L, 1, 1, 0) != 0) {
    std::fprintf(stderr, "flare: report: %s\n", describe_error(L, -1).c_str());
    return 1;
  }
  lua_getfield(L, -1, "cli");
  lua_createtable(L, 0, 4);
  lua_pushstring(L, request.run_dir.c_str());
  lua_setfield(L, -2, "dir");
  if (!request.out_path.empty()) {
    lua_pushstring(L, request.out_path.c_str());
    lua_setfield(L, -2, "out");
  }
  lua_pushboolean(L, request.term);
  lua_setfield(L, -2, "term");
  lua_pushboolean(L, request.color);
  lua_setfield(L, -2, "color");
  int status = 0;
  if (lua_pcall(L, 1, 1, 0) != 0) {
    std::fprintf(stderr, "flare: report: %s\n", describe_error(L, -1).c_str());
    status = 1;
  } else if (lua_isstring(L, -1)) {
    std::printf("%s\n", lua_tostring(L, -1));
  }
  lua_settop(L, 0);
  if (host.run_cleanups(status == 0 ? "exit" : "error") > 0) status = 1;
  return status;
}

}  // namespace flare::lua
