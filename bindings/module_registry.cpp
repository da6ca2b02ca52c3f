#include "module.hpp"

namespace flare::lua {
namespace {
std::vector<ModuleEntry>& modules() {
  static std::vector<ModuleEntry> list;
  return list;
}
}  // namespace

ModuleRegistration::ModuleRegistration(const char* name, ModuleOpener open) {
  modules().push_back({name, open});
}

const std::vector<ModuleEntry>& registered_modules() {
  return modules();
}

}  // namespace flare::lua
