// flare repl: the interactive prompt (also `flare` alone on a terminal).
// Standard input that is not a terminal runs as a script, without prompts.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "host.hpp"
#include "repl.hpp"
#include "subcommand.hpp"

namespace {

int repl_main(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::printf(
          "usage: flare repl\n\n"
          "Interactive Lua with the flare API. `=expr` or a bare expression prints its value;\n"
          "Tab completes; Ctrl-C interrupts the running call or clears the line; Ctrl-D exits.\n"
          ":help lists the API, :reload NAME re-requires a module.\n\n"
          "history: $XDG_STATE_HOME/flare/history (~/.local/state/flare/history)\n"
          "rc file: $XDG_CONFIG_HOME/flare/init.lua (~/.config/flare/init.lua)\n"
          "NO_COLOR turns colour off.\n");
      return 0;
    }
    std::fprintf(stderr, "flare: repl: unexpected argument '%s' (see `flare repl --help`)\n",
                 a.c_str());
    return 2;
  }
  flare::lua::Host host;
  if (!isatty(STDIN_FILENO)) return host.run_file("-", {});
  return flare::lua::run_repl(host, flare::lua::default_repl_options());
}

}  // namespace

FLARE_SUBCOMMAND(repl, "interactive prompt (the default on a terminal): flare repl", repl_main);
