#include "sandbox_runner.hpp"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <lua.hpp>
#include <string>
#include <vector>

#include "host.hpp"
#include "module_trees.hpp"
#include "runtime/landlock.hpp"
#include "sandbox_config.hpp"
#include "sandbox_limits.hpp"
#include "sandbox_policy.hpp"

namespace flare::lua {
namespace {
namespace fs = std::filesystem;

const char* const kUsage =
    "usage: flare run --sandbox [OPTIONS] FILE [ARGS...]\n"
    "  --allow-prefix P     deployment and trainer ids starting with P (repeatable)\n"
    "  --allow-read DIR     also read under DIR (repeatable)\n"
    "  --allow-write DIR    also write under DIR (repeatable)\n"
    "  --run-dir DIR        the run directory: read and write (default $FLARE_RUNS_DIR or runs)\n"
    "  --memory-mb N        Lua memory cap (default 1024; 0 = none)\n"
    "  --time-limit S       wall-clock limit in seconds (default 3600; 0 = none)\n"
    "  --max-instructions N VM instruction budget (default none; runs without the JIT)\n";

struct Options {
  std::vector<std::string> prefixes, reads, writes;
  std::string run_dir;
  sandbox::Limits limits{1024, 3600, 0};
};

int usage(const std::string& msg) {
  std::fprintf(stderr, "flare: run --sandbox: %s\n%s", msg.c_str(), kUsage);
  return 2;
}

bool parse_number(const std::string& text, double& out) {
  char* end = nullptr;
  out = std::strtod(text.c_str(), &end);
  return !text.empty() && end && *end == '\0' && out >= 0;
}

std::string canonical_dir(const std::string& dir, bool create) {
  std::error_code ec;
  if (create) fs::create_directories(dir, ec);
  fs::path p = fs::canonical(dir, ec);
  return ec ? "" : p.string();
}

void add_unique(std::vector<std::string>& v, const std::string& s) {
  if (s.empty()) return;
  for (const auto& x : v)
    if (x == s) return;
  v.push_back(s);
}

// What flare's own trusted parts need besides the sandbox's grants: its program and stdlib, the
// system's libraries (opened on first use), certificates, name resolution, randomness.
std::vector<landlock::Rule> host_rules(const sandbox::ProcessConfig& c,
                                       const std::string& scratch) {
  using landlock::Access;
  std::vector<landlock::Rule> rules;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) rules.push_back({exe.parent_path().string(), Access::Read});
  rules.push_back({stdlib_dir(), Access::Read});
  for (const char* p : {"/usr", "/lib", "/lib64", "/etc/ssl", "/etc/ca-certificates",
                        "/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf",
                        "/etc/host.conf", "/etc/localtime", "/dev/urandom", "/dev/random"})
    rules.push_back({p, Access::Read});
  rules.push_back({"/dev/null", Access::ReadWrite});
  for (const auto& r : c.read_roots) rules.push_back({r, Access::Read});
  for (const auto& w : c.write_roots) rules.push_back({w, Access::ReadWrite});
  rules.push_back({scratch, Access::ReadWrite});
  if (const char* st = std::getenv("FLARE_EMULATOR_STATE_DIR"); st && *st) {
    std::error_code ec;
    fs::create_directories(st, ec);  // the emulator makes it; Landlock needs it now
    rules.push_back({st, Access::ReadWrite});
  }
  return rules;
}

// Removes what no code of a sandboxed process may reach: the FFI, C modules, bytecode dumps
// through the string metatable.
void harden(lua_State* L) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushnil(L);
  lua_setfield(L, -2, "ffi");
  lua_pop(L, 1);
  lua_getfield(L, -1, "loaded");
  lua_pushnil(L);
  lua_setfield(L, -2, "ffi");
  lua_pop(L, 1);
  lua_pushnil(L);
  lua_setfield(L, -2, "loadlib");
  lua_pushstring(L, "");
  lua_setfield(L, -2, "cpath");
  // package.loaders: keep the preload and Lua searchers, drop the C ones.
  lua_getfield(L, -1, "loaders");
  lua_pushnil(L);
  lua_rawseti(L, -2, 4);
  lua_pushnil(L);
  lua_rawseti(L, -2, 3);
  lua_pop(L, 2);
  lua_pushnil(L);
  lua_setglobal(L, "ffi");
}

// The Landlocked process cannot remove its temporary folder from /tmp: a child forked before
// Landlock waits for the process to end (its pipe closes) and removes it then.
void remove_when_done(const std::string& dir) {
  int fds[2];
  if (pipe(fds) != 0) return;
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[1]);
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
      dup2(null, 0);
      dup2(null, 1);
      dup2(null, 2);
    }
    char c;
    while (read(fds[0], &c, 1) > 0) {
    }
    std::error_code ec;
    fs::remove_all(dir, ec);
    _exit(0);
  }
  close(fds[0]);
  if (pid < 0) close(fds[1]);
  // The write end stays open (and is closed on exec, which the sandbox never reaches).
  else
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
}

}  // namespace

int sandbox_main(int argc, char** argv) {
  Options o;
  int i = 1;
  for (; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf("%s", kUsage);
      return 0;
    }
    if (a.size() < 2 || a.compare(0, 2, "--") != 0) break;
    std::string value;
    size_t eq = a.find('=');
    std::string name = a.substr(0, eq);
    if (eq != std::string::npos) {
      value = a.substr(eq + 1);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return usage("option " + name + " needs a value");
    }
    double num = 0;
    if (name == "--allow-prefix") {
      if (value.empty()) return usage("--allow-prefix needs a non-empty prefix");
      o.prefixes.push_back(value);
    } else if (name == "--allow-read") {
      o.reads.push_back(value);
    } else if (name == "--allow-write") {
      o.writes.push_back(value);
    } else if (name == "--run-dir") {
      o.run_dir = value;
    } else if (name == "--memory-mb" || name == "--time-limit" || name == "--max-instructions") {
      if (!parse_number(value, num))
        return usage(name + " must be a number >= 0, got '" + value + "'");
      (name == "--memory-mb"    ? o.limits.memory_mb
       : name == "--time-limit" ? o.limits.time_s
                                : o.limits.instructions) = num;
    } else {
      return usage("unknown option '" + name + "'");
    }
  }
  if (i >= argc) return usage("no script file");
  std::string script = argv[i];
  std::error_code ec;
  if (!fs::is_regular_file(script, ec)) {
    std::fprintf(stderr, "flare: cannot run %s: not a file\n", script.c_str());
    return 1;
  }
  std::vector<std::string> args(argv + i + 1, argv + argc);

  auto& c = sandbox::process_config();
  c.script = fs::canonical(script, ec).string();
  c.script_dir = fs::path(c.script).parent_path().string();
  if (o.run_dir.empty()) {
    const char* env = std::getenv("FLARE_RUNS_DIR");
    o.run_dir = env && *env ? env : "runs";
  }
  c.run_dir = canonical_dir(o.run_dir, true);
  if (c.run_dir.empty()) {
    std::fprintf(stderr, "flare: run --sandbox: cannot create the run directory %s\n",
                 o.run_dir.c_str());
    return 1;
  }
  setenv("FLARE_RUNS_DIR", c.run_dir.c_str(), 1);  // flare.recipe writes its runs there
  add_unique(c.read_roots, c.script_dir);
  add_unique(c.read_roots, c.run_dir);
  add_unique(c.write_roots, c.run_dir);
  for (const auto& r : o.reads) {
    std::string d = canonical_dir(r, false);
    if (d.empty()) return usage("--allow-read " + r + ": no such directory");
    add_unique(c.read_roots, d);
  }
  for (const auto& w : o.writes) {
    std::string d = canonical_dir(w, false);
    if (d.empty()) return usage("--allow-write " + w + ": no such directory");
    add_unique(c.read_roots, d);
    add_unique(c.write_roots, d);
  }
  // Lua modules come from the script's folder, the LuaRocks trees and FLARE_PATH, as outside
  // the sandbox (C modules do not load in it).
  add_unique(c.search, c.script_dir);
  for (const auto& t : rock_trees())
    add_unique(c.search, canonical_dir(t.root + "/share/lua/5.1", false));
  for (const auto& d : flare_path_dirs()) add_unique(c.search, canonical_dir(d, false));
  for (const auto& d : c.search) add_unique(c.read_roots, d);
  c.prefixes = o.prefixes;

  // Flare's own temporary files (the in-process emulator's state) go to a folder of their own,
  // which the OS grants and the language-level checks do not.
  std::string tmpl = (fs::temp_directory_path(ec) / "flare-sandbox-XXXXXX").string();
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) {
    std::fprintf(stderr, "flare: run --sandbox: cannot create a temporary folder\n");
    return 1;
  }
  std::string scratch = buf.data();
  setenv("TMPDIR", scratch.c_str(), 1);
  remove_when_done(scratch);

  // Before any thread starts: Landlock binds this thread and what it starts later.
  auto outcome = landlock::restrict_self(host_rules(c, scratch));
  c.landlock_abi = outcome.abi;
  c.landlock_applied = outcome.applied;
  if (!outcome.applied) {
    std::fprintf(stderr,
                 "flare: sandbox: %s; files are limited by the language-level checks only\n",
                 outcome.message.c_str());
  }
  c.active = true;

  int status;
  {
    Host host(c.script_dir);
    harden(host.state());
    sandbox::activate_process(
        {c.prefixes, sandbox::configured_origins(), c.read_roots, c.write_roots});
    sandbox::arm_limits(host.state(), o.limits);
    std::vector<std::string> boot_args{c.script};
    boot_args.insert(boot_args.end(), args.begin(), args.end());
    status = host.run_string("return require('flare.sandbox')._main(...)", "=(sandbox)", boot_args);
    sandbox::disarm_limits();
  }
  return status;
}

}  // namespace flare::lua
