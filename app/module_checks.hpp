#pragma once
// The checks `flare run` makes on the shared modules a script loads:
// luarocks.lock pins and `flare run --replay RUN_DIR [--force]`.
#include "host.hpp"

namespace flare::cli {

// Warns on stderr for each rock pinned in ./luarocks.lock whose installed version
// (the one `require` loads) differs. Nothing happens without a lock file.
void warn_about_lock(flare::lua::Host& host);

// flare run --replay RUN_DIR [--force]: runs the script of RUN_DIR/config.json with
// the same arguments; refuses, naming the module, when a module's source or the
// script differs from the record unless --force. argv[0] is the first option.
int replay_main(int argc, char** argv);

}  // namespace flare::cli
