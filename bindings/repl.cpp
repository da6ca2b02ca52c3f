#include "repl.hpp"

#include <luajit.h>
#include <unistd.h>

#include <clocale>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "host.hpp"
#include "repl_session.hpp"
#include "runtime/interrupt.hpp"
#include "terminal/repl_editor.hpp"

#ifndef FLARE_VERSION
#define FLARE_VERSION "0.0.0"
#endif

namespace flare::lua {
namespace {

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// $XDG_<kind> if set and absolute, else ~/<fallback>.
std::string xdg_dir(const char* variable, const char* fallback) {
  std::string dir = env_or_empty(variable);
  if (!dir.empty() && dir[0] == '/') return dir;
  std::string home = env_or_empty("HOME");
  if (home.empty()) return "";
  return home + "/" + fallback;
}

}  // namespace

ReplOptions default_repl_options() {
  ReplOptions o;
  std::string state = xdg_dir("XDG_STATE_HOME", ".local/state");
  std::string config = xdg_dir("XDG_CONFIG_HOME", ".config");
  if (!state.empty()) o.history_path = state + "/flare/history";
  if (!config.empty()) o.rc_path = config + "/flare/init.lua";
  o.color =
      isatty(STDOUT_FILENO) && env_or_empty("NO_COLOR").empty() && env_or_empty("TERM") != "dumb";
  return o;
}

int run_repl(Host& host, const ReplOptions& options) {
  // libedit drops bytes it cannot decode: without a multibyte locale, typed
  // UTF-8 (names, prompts in other languages) would vanish.
  if (std::setlocale(LC_CTYPE, "") == nullptr || MB_CUR_MAX == 1) {
    std::setlocale(LC_CTYPE, "C.UTF-8");
  }
  ReplSession session(host.state(), options.color);
  const char* dim = options.color ? "\x1b[2m" : "";
  const char* reset = options.color ? "\x1b[0m" : "";
  std::printf("flare %s (%s)  %s:help lists the API, Ctrl-D exits%s\n", FLARE_VERSION,
              LUAJIT_VERSION, dim, reset);
  std::fflush(stdout);
  session.run_rc(options.rc_path);

  LineEditor editor("flare", options.history_path);
  editor.set_completer([&session](const std::string& before) { return session.complete(before); });
  std::string prompt = options.color ? "\x1b[1;36mflare>\x1b[0m " : "flare> ";
  std::string more = options.color ? "\x1b[2m  ...>\x1b[0m " : "  ...> ";

  int exit_code = 0;
  const char* reason = "exit";
  std::string chunk;
  for (;;) {
    LineEditor::Result r = editor.read(chunk.empty() ? prompt : more);
    if (r.status == LineEditor::Status::eof) {
      std::fputc('\n', stdout);
      break;
    }
    if (r.status == LineEditor::Status::terminated) {
      exit_code = 143;
      reason = "interrupt";
      break;
    }
    if (r.status == LineEditor::Status::cancelled) {
      chunk.clear();
      continue;
    }
    editor.add_history(r.line);
    chunk = chunk.empty() ? r.line : chunk + "\n" + r.line;
    ReplSession::Outcome outcome = session.submit(chunk);
    if (outcome == ReplSession::Outcome::incomplete) continue;
    chunk.clear();
    if (outcome == ReplSession::Outcome::quit) break;
    if (outcome == ReplSession::Outcome::terminated) {
      exit_code = 143;
      reason = "interrupt";
      break;
    }
  }
  std::fflush(stdout);
  flare::interrupt::clear();
  flare::interrupt::reset_count();
  if (host.run_cleanups(reason) > 0 && exit_code == 0) exit_code = 1;
  return exit_code;
}

}  // namespace flare::lua
