#pragma once
// The interactive prompt: reads lines with libedit, evaluates them in the
// host's Lua state, prints values with flare.repl.pretty. No Lua header here.
#include <string>

namespace flare::lua {

class Host;

struct ReplOptions {
  std::string history_path;  // "" = no persistent history
  std::string rc_path;       // run at start when it exists; "" = none
  bool color = false;
};

// History in $XDG_STATE_HOME/flare/history (~/.local/state/flare/history), rc
// file $XDG_CONFIG_HOME/flare/init.lua (~/.config/flare/init.lua), colour
// when stdout is a terminal and NO_COLOR is unset.
ReplOptions default_repl_options();

// Runs until Ctrl-D or :quit, then the registered cleanups. Returns the exit
// status (0, or 143 when terminated by SIGTERM).
int run_repl(Host& host, const ReplOptions& options);

}  // namespace flare::lua
