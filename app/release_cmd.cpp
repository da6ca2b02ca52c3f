// flare release ...: the release registry, stage changes, promotion gates and drift
// checks (stdlib/flare/release/cli.lua does the work; docs/release.md).
#include "lua_cli_runner.hpp"
#include "subcommand.hpp"

namespace {

int release_main(int argc, char** argv) {
  return flare::lua::run_lua_cli("release", "flare.release.cli", argc, argv);
}

}  // namespace

FLARE_SUBCOMMAND(release, "model versions, stages, gates: flare release list|show|gate ...",
                 release_main);
