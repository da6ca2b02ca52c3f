#pragma once
// Runs one *_spec.lua file in a fresh Lua state (for `flare test`).
#include <string>

namespace flare::lua {

struct SpecCounts {
  int passed = 0;
  int failed = 0;
  int skipped = 0;
};

SpecCounts run_spec_file(const std::string& path, bool verbose);

}  // namespace flare::lua
