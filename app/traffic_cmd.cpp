// flare traffic replay PROMPTS.jsonl: an open-loop load replayer with verifier feedback
// (stdlib/flare/release/traffic_cli.lua does the work; docs/release.md).
#include "lua_cli_runner.hpp"
#include "subcommand.hpp"

namespace {

int traffic_main(int argc, char** argv) {
  return flare::lua::run_lua_cli("traffic", "flare.release.traffic_cli", argc, argv);
}

}  // namespace

FLARE_SUBCOMMAND(traffic, "replay prompts against a gateway: flare traffic replay FILE --rate R",
                 traffic_main);
