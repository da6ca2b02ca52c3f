// flare gateway FAMILY: the front of a model family (nginx as the data plane, the release
// registry as the control plane; stdlib/flare/release/gateway.lua, docs/release.md).
#include "lua_cli_runner.hpp"
#include "subcommand.hpp"

namespace {

int gateway_main(int argc, char** argv) {
  return flare::lua::run_lua_cli("gateway", "flare.release.gateway_cli", argc, argv);
}

}  // namespace

FLARE_SUBCOMMAND(gateway, "serve a model family's versions: flare gateway FAMILY [--port P]",
                 gateway_main);
