#include "repl_session.hpp"

#include <signal.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <lua.hpp>

extern "C" {
#include <luajit.h>
}

#include "error_boundary.hpp"
#include "runtime/interrupt.hpp"

namespace flare::lua {
namespace {

constexpr const char* kChunkName = "=stdin";

// A chunk is incomplete when the parser stopped at the end of the text.
bool is_eof_error(lua_State* L) {
  size_t len = 0;
  const char* msg = lua_tolstring(L, -1, &len);
  const char marker[] = "'<eof>'";
  size_t mlen = sizeof marker - 1;
  return msg != nullptr && len >= mlen && std::strcmp(msg + len - mlen, marker) == 0;
}

int traceback_handler(lua_State* L) {
  if (lua_type(L, 1) == LUA_TSTRING) luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

// The REPL's own frames say nothing to the user: cut the traceback where the
// typed chunk ends.
std::string trim_traceback(const std::string& text) {
  std::string out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    if (line.find("[C]: at 0x") != std::string::npos || line == "\t[C]: ?") break;
    out += (out.empty() ? "" : "\n") + line;
    if (line.find("stdin:") != std::string::npos && line.find("main chunk") != std::string::npos) {
      break;
    }
    start = end + 1;
  }
  return out;
}

void after_lua_call() {
  flare::interrupt::clear();
  flare::interrupt::reset_count();
}

}  // namespace

ReplSession::ReplSession(lua_State* L, bool color) : L_(L), color_(color) {}

bool ReplSession::call_module(const char* module, const char* fn, int nargs, int nresults) {
  int base = lua_gettop(L_) - nargs;
  lua_getglobal(L_, "require");
  lua_pushfstring(L_, "flare.repl.%s", module);
  if (lua_pcall(L_, 1, 1, 0) != 0) {
    print_error(-1);
    lua_settop(L_, base);
    return false;
  }
  lua_getfield(L_, -1, fn);
  lua_remove(L_, -2);
  lua_insert(L_, base + 1);
  lua_pushcfunction(L_, traceback_handler);
  lua_insert(L_, base + 1);
  int status = lua_pcall(L_, nargs, nresults, base + 1);
  if (status != 0) {
    print_error(-1);
    lua_settop(L_, base);
    return false;
  }
  lua_remove(L_, base + 1);
  return true;
}

void ReplSession::print_error(int idx) {
  idx = idx < 0 ? lua_gettop(L_) + idx + 1 : idx;
  const char* red = color_ ? "\x1b[31m" : "";
  const char* reset = color_ ? "\x1b[0m" : "";
  if (error_code(L_, idx) == "interrupted") {
    // On a new line: the terminal has just echoed ^C.
    std::fprintf(stderr, "\n%sinterrupted%s\n", red, reset);
    return;
  }
  std::string text = describe_error(L_, idx);
  if (lua_type(L_, idx) == LUA_TSTRING) text = trim_traceback(text);
  std::fprintf(stderr, "%s%s%s\n", red, text.c_str(), reset);
}

void ReplSession::print_values(int first, int count) {
  if (count <= 0) return;
  int top = lua_gettop(L_);
  lua_createtable(L_, 0, 1);
  lua_pushboolean(L_, color_);
  lua_setfield(L_, -2, "color");
  lua_pushinteger(L_, count);
  for (int i = 0; i < count; i++) lua_pushvalue(L_, first + i);
  if (call_module("pretty", "format_values", count + 2, 1)) {
    size_t len = 0;
    const char* text = lua_tolstring(L_, -1, &len);
    if (text != nullptr) {
      std::fwrite(text, 1, len, stdout);
      std::fputc('\n', stdout);
    }
  }
  lua_settop(L_, top);
}

ReplSession::Outcome ReplSession::execute(int base) {
  // Typed code stays in the interpreter, where the interrupt hook runs: a
  // JIT-compiled `while true do end` could not be stopped by Ctrl-C. Library
  // code it calls keeps the JIT.
  luaJIT_setmode(L_, -1, LUAJIT_MODE_ALLFUNC | LUAJIT_MODE_OFF);
  lua_pushcfunction(L_, traceback_handler);
  lua_insert(L_, base + 1);
  int status = lua_pcall(L_, 0, LUA_MULTRET, base + 1);
  Outcome outcome = Outcome::done;
  if (status != 0) {
    bool interrupted = error_code(L_, -1) == "interrupted";
    if (interrupted && flare::interrupt::last_signal() == SIGTERM) outcome = Outcome::terminated;
    print_error(-1);
  } else {
    print_values(base + 2, lua_gettop(L_) - base - 1);
  }
  std::fflush(stdout);
  lua_settop(L_, base);
  after_lua_call();
  return outcome;
}

ReplSession::Outcome ReplSession::command(const std::string& line) {
  int base = lua_gettop(L_);
  lua_pushlstring(L_, line.data(), line.size());
  lua_createtable(L_, 0, 1);
  lua_pushboolean(L_, color_);
  lua_setfield(L_, -2, "color");
  Outcome outcome = Outcome::done;
  if (call_module("commands", "run", 2, 2)) {
    if (lua_isstring(L_, -2)) {
      std::fputs(lua_tostring(L_, -2), stdout);
      std::fputc('\n', stdout);
    }
    if (lua_isstring(L_, -1) && std::strcmp(lua_tostring(L_, -1), "quit") == 0) {
      outcome = Outcome::quit;
    }
  }
  std::fflush(stdout);
  lua_settop(L_, base);
  after_lua_call();
  return outcome;
}

ReplSession::Outcome ReplSession::submit(const std::string& chunk) {
  size_t first = chunk.find_first_not_of(" \t");
  if (first == std::string::npos) return Outcome::done;
  if (chunk[first] == ':' && chunk.find('\n') == std::string::npos) {
    return command(chunk.substr(first));
  }
  std::string text = chunk[first] == '=' ? "return " + chunk.substr(first + 1) : chunk;
  int base = lua_gettop(L_);
  std::string as_expression = "return " + text;
  if (luaL_loadbuffer(L_, as_expression.data(), as_expression.size(), kChunkName) == 0) {
    return execute(base);
  }
  bool expression_unfinished = is_eof_error(L_);
  lua_settop(L_, base);
  if (luaL_loadbuffer(L_, text.data(), text.size(), kChunkName) == 0) return execute(base);
  if (expression_unfinished || is_eof_error(L_)) {
    lua_settop(L_, base);
    return Outcome::incomplete;
  }
  print_error(-1);
  lua_settop(L_, base);
  return Outcome::done;
}

Completion ReplSession::complete(const std::string& before_cursor) {
  Completion result;
  int base = lua_gettop(L_);
  lua_pushlstring(L_, before_cursor.data(), before_cursor.size());
  lua_getglobal(L_, "require");
  lua_pushstring(L_, "flare.repl.complete");
  if (lua_pcall(L_, 1, 1, 0) != 0) {
    lua_settop(L_, base);
    after_lua_call();
    return result;
  }
  lua_getfield(L_, -1, "complete");
  lua_pushvalue(L_, base + 1);
  // Completion never reports errors: a broken __index must not break typing.
  if (lua_pcall(L_, 1, 2, 0) == 0 && lua_isnumber(L_, -2) && lua_istable(L_, -1)) {
    lua_Integer start = lua_tointeger(L_, -2);
    if (start >= 1 && static_cast<size_t>(start) <= before_cursor.size() + 1) {
      result.start = static_cast<size_t>(start - 1);
      size_t n = lua_objlen(L_, -1);
      for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L_, -1, static_cast<int>(i));
        if (lua_type(L_, -1) == LUA_TSTRING) result.candidates.emplace_back(lua_tostring(L_, -1));
        lua_pop(L_, 1);
      }
    }
  }
  lua_settop(L_, base);
  after_lua_call();
  return result;
}

void ReplSession::run_rc(const std::string& path) {
  std::error_code ec;
  if (path.empty() || !std::filesystem::is_regular_file(path, ec)) return;
  int base = lua_gettop(L_);
  if (luaL_loadfile(L_, path.c_str()) != 0) {
    print_error(-1);
    lua_settop(L_, base);
    return;
  }
  lua_pushcfunction(L_, traceback_handler);
  lua_insert(L_, base + 1);
  if (lua_pcall(L_, 0, 0, base + 1) != 0) {
    std::fprintf(stderr, "flare: %s: ", path.c_str());
    print_error(-1);
  }
  lua_settop(L_, base);
  after_lua_call();
}

}  // namespace flare::lua
