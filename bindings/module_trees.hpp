#pragma once
// Where `require` looks, in order: the script's folder, the LuaRocks trees
// (the project's ./lua_modules as `luarocks init` makes it, the user tree
// ~/.luarocks, the system tree /usr/local), the FLARE_PATH folders, the stdlib.
// No Lua header here: `flare version` (app/) lists the same places.
#include <string>
#include <vector>

namespace flare::lua {

// A LuaRocks tree installed with `luarocks --lua-version 5.1`: Lua files under
// share/lua/5.1, C modules under lib/lua/5.1.
struct RockTree {
  const char* kind;  // "project", "user" or "system"
  std::string root;  // absolute
};

std::vector<RockTree> rock_trees();
std::vector<std::string> flare_path_dirs();  // $FLARE_PATH, ';'-separated

// package.path and package.cpath entries in search order (each ends with ';');
// the interpreter's defaults are appended by the caller.
std::string lua_search_path(const std::string& script_dir, const std::string& stdlib);
std::string c_search_path();

}  // namespace flare::lua
