// flare.repl: what the prompt's Lua side needs from the host.
//   list_dir(path) -> files, dirs   (names, sorted; empty when unreadable)
//   c_modules()    -> names of the C++-backed flare.<name> modules

#include <algorithm>
#include <filesystem>
#include <lua.hpp>
#include <string>
#include <vector>

#include "lua_support.hpp"
#include "module.hpp"

namespace flare::lua {
namespace {

int l_list_dir(lua_State* L) {
  std::string path(check_string(L, 1, "flare.repl.list_dir", "path"));
  std::vector<std::string> files, dirs;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(path, ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    std::error_code type_ec;
    std::string name = it->path().filename().string();
    if (it->is_directory(type_ec)) {
      dirs.push_back(name);
    } else if (it->is_regular_file(type_ec)) {
      files.push_back(name);
    }
  }
  std::sort(files.begin(), files.end());
  std::sort(dirs.begin(), dirs.end());
  push_strings(L, files);
  push_strings(L, dirs);
  return 2;
}

int l_c_modules(lua_State* L) {
  std::vector<std::string> names;
  for (const auto& m : registered_modules()) names.emplace_back(m.name);
  std::sort(names.begin(), names.end());
  push_strings(L, names);
  return 1;
}

int open_repl(lua_State* L) {
  const luaL_Reg fns[] = {
      {"list_dir", l_list_dir},
      {"c_modules", l_c_modules},
      {nullptr, nullptr},
  };
  push_functions(L, fns);
  return 1;
}

}  // namespace
}  // namespace flare::lua

FLARE_LUA_MODULE(repl, flare::lua::open_repl);
