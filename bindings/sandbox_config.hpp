#pragma once
// What `flare run --sandbox` granted, handed from the runner to the Lua side
// (flare.sandbox_native.process_config()). No Lua header.
#include <string>
#include <vector>

namespace flare::sandbox {

struct ProcessConfig {
  bool active = false;
  std::string script;                   // canonical path of the script
  std::string script_dir;               // canonical
  std::string run_dir;                  // canonical, created
  std::vector<std::string> search;      // its require's folders: script_dir, rock trees, FLARE_PATH
  std::vector<std::string> read_roots;  // search, run_dir, --allow-read
  std::vector<std::string> write_roots;  // run_dir, --allow-write
  std::vector<std::string> prefixes;     // --allow-prefix
  int landlock_abi = 0;                  // 0: the kernel has none
  bool landlock_applied = false;
};

ProcessConfig& process_config();

}  // namespace flare::sandbox
