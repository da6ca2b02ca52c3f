#include "subcommand.hpp"

#include <algorithm>

namespace flare::cli {
namespace {
std::vector<Subcommand>& table() {
  static std::vector<Subcommand> list;
  return list;
}
}  // namespace

SubcommandRegistration::SubcommandRegistration(const char* name, const char* summary,
                                               SubcommandMain main) {
  auto& t = table();
  t.push_back({name, summary, main});
  std::sort(t.begin(), t.end(), [](const Subcommand& a, const Subcommand& b) {
    return std::string_view(a.name) < b.name;
  });
}

const std::vector<Subcommand>& subcommands() {
  return table();
}

const Subcommand* find_subcommand(std::string_view name) {
  for (const auto& s : table()) {
    if (name == s.name) return &s;
  }
  return nullptr;
}

}  // namespace flare::cli
