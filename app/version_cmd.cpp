// flare version: the versions of flare and of the libraries it runs on.
#include <zstd.h>

#include <cstdio>

#include "emulator/server/loaded_emulator.hpp"
#include "host.hpp"
#include "net/libcurl.hpp"
#include "subcommand.hpp"

#ifndef FLARE_VERSION
#define FLARE_VERSION "0.0.0"
#endif

namespace {

int version_main(int, char**) {
  std::printf("flare %s\n", FLARE_VERSION);
  std::printf("%s\n", flare::lua::luajit_version());
  std::printf("libcurl %s\n", flare::net::libcurl().version_info(CURLVERSION_NOW)->version);
  std::printf("zstd %s\n", ZSTD_versionString());
  std::printf("SQLite %s\n", flare::emulator::sqlite_version().c_str());
  return 0;
}

}  // namespace

FLARE_SUBCOMMAND(version, "print the versions of flare and its libraries", version_main);
