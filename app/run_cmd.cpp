// flare run FILE [ARGS...]
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "host.hpp"
#include "module_checks.hpp"
#include "sandbox_runner.hpp"
#include "subcommand.hpp"

namespace {

int run_main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "flare: run needs a script file (see `flare --help`)\n");
    return 2;
  }
  if (std::string(argv[1]) == "--sandbox") return flare::lua::sandbox_main(argc - 1, argv + 1);
  std::string path = argv[1];
  if (path.rfind("--replay", 0) == 0 || path == "--force") {
    return flare::cli::replay_main(argc - 1, argv + 1);
  }
  std::string dir;
  if (path != "-") {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
      std::fprintf(stderr, "flare: cannot run %s: it is a directory\n", path.c_str());
      return 1;
    }
    dir = std::filesystem::path(path).parent_path().string();
  }
  flare::lua::Host host(dir);
  flare::cli::warn_about_lock(host);
  return host.run_file(path, std::vector<std::string>(argv + 2, argv + argc));
}

}  // namespace

FLARE_SUBCOMMAND(run,
                 "run a Lua script: flare run [--sandbox [OPTIONS]] FILE [ARGS...] | --replay "
                 "RUN_DIR [--force]",
                 run_main);
