#pragma once
// One REPL session's Lua side: compiles what was typed (bare expressions and
// `=expr` print their values, statements run, incomplete chunks ask for more),
// runs it with Ctrl-C returning to the prompt, and answers completions and
// `:commands` through the Lua modules under stdlib/flare/repl/.
#include <string>

#include "terminal/repl_editor.hpp"

struct lua_State;

namespace flare::lua {

class ReplSession {
 public:
  enum class Outcome { done, incomplete, quit, terminated };

  ReplSession(lua_State* L, bool color);

  // chunk: everything typed since the last complete chunk, lines joined by "\n".
  Outcome submit(const std::string& chunk);
  Completion complete(const std::string& before_cursor);
  // Runs the rc file when it exists; errors are printed, not fatal.
  void run_rc(const std::string& path);

 private:
  Outcome execute(int base);
  Outcome command(const std::string& line);
  void print_error(int idx);
  void print_values(int first, int count);
  // Calls flare.repl.<module>.<fn> with nargs arguments on the stack top; on
  // success leaves nresults values, else prints the error and leaves none.
  bool call_module(const char* module, const char* fn, int nargs, int nresults);

  lua_State* L_;
  bool color_;
};

}  // namespace flare::lua
