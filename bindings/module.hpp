#pragma once
// Registration of the C++-backed Lua modules: a bindings file pushes one table
// from its opener and registers it with FLARE_LUA_MODULE(name, opener); the
// module is then flare.<name> and require("flare.<name>").
#include <lua.hpp>
#include <string>
#include <vector>

namespace flare::lua {

using ModuleOpener = int (*)(lua_State*);

struct ModuleEntry {
  const char* name;
  ModuleOpener open;
};

struct ModuleRegistration {
  ModuleRegistration(const char* name, ModuleOpener open);
};

const std::vector<ModuleEntry>& registered_modules();

}  // namespace flare::lua

#define FLARE_LUA_MODULE(name, opener) \
  static ::flare::lua::ModuleRegistration flare_lua_module_registration_##name(#name, opener)
