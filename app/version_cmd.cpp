// flare version: the versions of flare and of the libraries it runs on, and the
// places `require` searches.
#include <zstd.h>

#include <cstdio>
#include <filesystem>

#include "emulator/server/loaded_emulator.hpp"
#include "host.hpp"
#include "module_trees.hpp"
#include "net/libcurl.hpp"
#include "subcommand.hpp"

#ifndef FLARE_VERSION
#define FLARE_VERSION "0.0.0"
#endif

namespace {

void print_search_path() {
  std::error_code ec;
  std::printf("require searches, in order:\n  the script's folder\n");
  for (const auto& t : flare::lua::rock_trees()) {
    bool present = std::filesystem::is_directory(t.root, ec);
    std::printf("  %-10s %s%s\n", t.kind, t.root.c_str(), present ? "" : " (absent)");
  }
  for (const auto& d : flare::lua::flare_path_dirs())
    std::printf("  %-10s %s\n", "FLARE_PATH", d.c_str());
  std::printf("  %-10s %s\n", "stdlib", flare::lua::stdlib_dir().c_str());
}

int version_main(int, char**) {
  std::printf("flare %s\n", FLARE_VERSION);
  std::printf("%s\n", flare::lua::luajit_version());
  std::printf("libcurl %s\n", flare::net::libcurl().version_info(CURLVERSION_NOW)->version);
  std::printf("zstd %s\n", ZSTD_versionString());
  std::printf("SQLite %s\n", flare::emulator::sqlite_version().c_str());
  std::printf("flare API %d (flare.api_version, which shared modules check)\n",
              flare::lua::kApiVersion);
  print_search_path();
  return 0;
}

}  // namespace

FLARE_SUBCOMMAND(version, "print the versions of flare and its libraries", version_main);
