#pragma once
// Runs a subcommand written in Lua: require(module)(args) where args is the list of
// the subcommand's arguments; the function returns the exit status (nil = 0). No Lua
// header here. An error raised with code "usage" exits 2, any other exits 1, each
// printed as "flare: <command>: <message>".
namespace flare::lua {

int run_lua_cli(const char* command, const char* module, int argc, char** argv);

}  // namespace flare::lua
