#pragma once
// Landlock (Linux >= 5.13) through its three system calls: the process (the calling thread and
// every thread and child it starts afterwards) gives up file access outside the granted trees.
// Irreversible. No library: linux/landlock.h and syscall(2).
#include <string>
#include <vector>

namespace flare::landlock {

enum class Access { Read, ReadWrite };

struct Rule {
  std::string path;  // a directory (the whole tree beneath it) or a file
  Access access = Access::Read;
};

// The kernel's Landlock ABI version, 0 when it has none (or it is disabled).
int abi_version();

struct Outcome {
  bool applied = false;
  int abi = 0;
  std::string message;  // why it was not applied, or which granted paths were missing
};

// Restricts this thread (call before starting threads) to the rules: reads (files, directory
// listings) and, for ReadWrite, file creation, writes, removal and renames beneath each path.
// Execution of programs is refused everywhere. Paths that do not exist are skipped (listed in
// message). When the kernel has no Landlock nothing is changed and applied is false.
Outcome restrict_self(const std::vector<Rule>& rules);

}  // namespace flare::landlock
