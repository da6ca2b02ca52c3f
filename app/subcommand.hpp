#pragma once
// Subcommands of the flare program register themselves:
//   static int serve_main(int argc, char** argv);   // argv[0] = "serve"
//   FLARE_SUBCOMMAND(serve, "run the local emulator", serve_main);
// Exit status: 0 success, 1 failure, 2 usage error.
#include <string_view>
#include <vector>

namespace flare::cli {

using SubcommandMain = int (*)(int argc, char** argv);

struct Subcommand {
  const char* name;
  const char* summary;
  SubcommandMain main;
};

struct SubcommandRegistration {
  SubcommandRegistration(const char* name, const char* summary, SubcommandMain main);
};

const std::vector<Subcommand>& subcommands();
const Subcommand* find_subcommand(std::string_view name);

}  // namespace flare::cli

#define FLARE_SUBCOMMAND(name, summary, fn)                                                        \
  static ::flare::cli::SubcommandRegistration flare_subcommand_registration_##name(#name, summary, \
                                                                                   fn)
