#pragma once
// flare run --sandbox [OPTIONS] FILE [ARGS...]: the script runs with only what the options grant
// (docs/sandbox.md). argv[0] is "--sandbox". Returns the process exit status (2: usage).
namespace flare::lua {

int sandbox_main(int argc, char** argv);

}  // namespace flare::lua
