// flare: post-training experiments as Lua scripts.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "host.hpp"
#include "subcommand.hpp"
#include "text/utf8.hpp"

namespace {

void print_help() {
  std::printf(
      "flare — post-training experiments as Lua scripts\n\n"
      "usage:\n"
      "  flare                     interactive REPL (runs standard input as a script when piped)\n"
      "  flare run FILE [ARGS...]  run a Lua script (`arg` as in luajit)\n"
      "  flare FILE.lua [ARGS...]  same as `flare run`\n"
      "  flare -e CODE [ARGS...]   run a chunk of Lua\n"
      "  flare help                this text (also --help, -h)\n\n"
      "subcommands:\n");
  for (const auto& s : flare::cli::subcommands()) std::printf("  %-12s %s\n", s.name, s.summary);
  std::printf(
      "\nenvironment: FIREWORKS_API_KEY, FIREWORKS_BASE_URL (else the local emulator),\n"
      "FLARE_PATH (';'-separated folders of shared Lua modules, searched after the LuaRocks\n"
      "trees ./lua_modules, ~/.luarocks and /usr/local; `flare version` lists them)\n");
}

int help_main(int, char**) {
  print_help();
  return 0;
}
FLARE_SUBCOMMAND(help, "list the subcommands", help_main);

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "flare: %s (see `flare --help`)\n", msg.c_str());
  return 2;
}

bool ends_with(const std::string& s, const char* suffix) {
  size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    size_t bad = flare::text::invalid_utf8_offset(argv[i]);
    if (bad != std::string::npos) {
      return usage_error("argument " + std::to_string(i) + " is not valid UTF-8 (byte offset " +
                         std::to_string(bad) + ")");
    }
  }
  if (argc < 2) {
    if (isatty(0)) {
      if (const auto* repl = flare::cli::find_subcommand("repl")) {
        char name[] = "repl";
        char* args[] = {name, nullptr};
        return repl->main(1, args);
      }
      return usage_error("no REPL in this build; give a script to run");
    }
    flare::lua::Host host;
    return host.run_file("-", {});
  }
  std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h") return help_main(argc - 1, argv + 1);
  if (cmd == "--version") cmd = "version";
  if (cmd == "-e") {
    if (argc < 3) return usage_error("-e needs a chunk of code");
    flare::lua::Host host;
    return host.run_string(argv[2], "=(command line)",
                           std::vector<std::string>(argv + 3, argv + argc));
  }
  if (ends_with(cmd, ".lua") || cmd == "-") {
    // argv[0] becomes "run": the script and its arguments follow as for `flare run`.
    return flare::cli::find_subcommand("run")->main(argc, argv);
  }
  if (const auto* sub = flare::cli::find_subcommand(cmd)) return sub->main(argc - 1, argv + 1);
  if (!cmd.empty() && cmd[0] == '-') return usage_error("unknown option '" + cmd + "'");
  return usage_error("unknown command '" + cmd + "'");
}
