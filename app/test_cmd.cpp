// flare test [-v] [PATHS...]: runs *_spec.lua files (directories are searched
// recursively) and ends with the line "N passed, N failed".
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "spec_runner.hpp"
#include "subcommand.hpp"

namespace fs = std::filesystem;

namespace {

bool is_spec(const fs::path& p) {
  std::string name = p.filename().string();
  return name.size() > 9 && name.compare(name.size() - 9, 9, "_spec.lua") == 0;
}

int test_main(int argc, char** argv) {
  bool verbose = false;
  std::vector<std::string> roots;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "-v" || a == "--verbose") {
      verbose = true;
    } else if (!a.empty() && a[0] == '-') {
      std::fprintf(stderr, "flare: test: unknown option '%s'\n", a.c_str());
      return 2;
    } else {
      roots.push_back(a);
    }
  }
  if (roots.empty()) roots.push_back("tests");
  std::vector<std::string> files;
  for (const auto& r : roots) {
    std::error_code ec;
    if (fs::is_directory(r, ec)) {
      for (auto it = fs::recursive_directory_iterator(r, ec); !ec && it != fs::end(it);
           it.increment(ec)) {
        if (it->is_regular_file() && is_spec(it->path())) files.push_back(it->path().string());
      }
    } else if (fs::exists(r, ec)) {
      files.push_back(r);
    } else {
      std::fprintf(stderr, "flare: test: no such file or directory: %s\n", r.c_str());
      return 2;
    }
  }
  std::sort(files.begin(), files.end());
  flare::lua::SpecCounts total;
  for (const auto& f : files) {
    auto c = flare::lua::run_spec_file(f, verbose);
    total.passed += c.passed;
    total.failed += c.failed;
    total.skipped += c.skipped;
    std::fflush(stdout);
  }
  if (total.skipped > 0) {
    std::printf("%d passed, %d failed, %d skipped\n", total.passed, total.failed, total.skipped);
  } else {
    std::printf("%d passed, %d failed\n", total.passed, total.failed);
  }
  return total.failed == 0 && (total.passed > 0 || files.empty()) ? 0 : 1;
}

}  // namespace

FLARE_SUBCOMMAND(test, "run *_spec.lua tests: flare test [-v] [PATHS...]", test_main);
