// flare.fs: the file operations recipes need (run directories, JSONL logs, hashes).
//   fs.mkdir_p(path)                    fs.exists(path) / fs.is_dir(path) -> bool
//   fs.list_dir(path) -> sorted names   fs.read_file(path) -> data | nil, message
//   fs.write_file_atomic(path, data)    (temp file + fsync + rename)
//   fs.append_line(path, line, {fsync = false})
//   fs.remove(path, {recursive = false}) -> removed (bool)
//   fs.sha256(data) / fs.sha256_file(path) -> lowercase hex
//   fs.getpid() -> number               fs.isatty(fd) -> bool
//   fs.cwd() -> string
// Failures other than a missing file for read_file raise with the path and the reason.
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <lua.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "lua_support.hpp"
#include "module.hpp"
#include "runtime/error.hpp"
#include "runtime/file_io.hpp"
#include "runtime/sha256.hpp"
#include "sandbox_policy.hpp"

namespace flare::lua {
namespace {

namespace stdfs = std::filesystem;

std::string sys_error(const std::string& what, const std::string& path) {
  return what + " '" + path + "': " + std::strerror(errno);
}

// In a sandbox the path must also be under its granted folders (flare/sandbox_policy.hpp).
std::string check_path(lua_State* L, int idx, const char* who, bool write = false) {
  std::string_view path = check_string(L, idx, who, "path");
  if (path.empty()) raise_invalid(who, "argument 'path' must not be empty");
  flare::sandbox::check_file(std::string(path), write);
  return std::string(path);
}

// exists and is_dir: a path outside a sandbox's folders reads as absent.
std::string probe_path(lua_State* L, int idx, const char* who) {
  std::string_view path = check_string(L, idx, who, "path");
  if (path.empty()) raise_invalid(who, "argument 'path' must not be empty");
  return std::string(path);
}

// The boolean option `name` of the options table at idx (nil or absent: false).
bool opt_flag(lua_State* L, int idx, const char* who, const char* name) {
  Options o(L, idx, who, false);
  bool v = o.boolean(name, false);
  o.finish();
  return v;
}

void write_all(int fd, const char* p, size_t n, const std::string& path) {
  while (n > 0) {
    ssize_t k = write(fd, p, n);
    if (k < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(sys_error("cannot write", path));
    }
    p += k;
    n -= static_cast<size_t>(k);
  }
}

int l_mkdir_p(lua_State* L) {
  std::string path = check_path(L, 1, "flare.fs.mkdir_p", true);
  std::error_code ec;
  stdfs::create_directories(path, ec);
  if (ec || !stdfs::is_directory(path)) {
    throw std::runtime_error("flare.fs.mkdir_p: cannot create '" + path +
                             "': " + (ec ? ec.message() : "not a directory"));
  }
  return 0;
}

int l_exists(lua_State* L) {
  std::error_code ec;
  std::string path = probe_path(L, 1, "flare.fs.exists");
  lua_pushboolean(L, flare::sandbox::file_allowed(path, false) && stdfs::exists(path, ec));
  return 1;
}

int l_is_dir(lua_State* L) {
  std::error_code ec;
  std::string path = probe_path(L, 1, "flare.fs.is_dir");
  lua_pushboolean(L, flare::sandbox::file_allowed(path, false) && stdfs::is_directory(path, ec));
  return 1;
}

int l_list_dir(lua_State* L) {
  std::string path = check_path(L, 1, "flare.fs.list_dir");
  std::error_code ec;
  std::vector<std::string> names;
  for (auto it = stdfs::directory_iterator(path, ec); !ec && it != stdfs::directory_iterator();
       it.increment(ec)) {
    names.push_back(it->path().filename().string());
  }
  if (ec)
    throw std::runtime_error("flare.fs.list_dir: cannot list '" + path + "': " + ec.message());
  std::sort(names.begin(), names.end());
  push_strings(L, names);
  return 1;
}

int l_read_file(lua_State* L) {
  std::string path = check_path(L, 1, "flare.fs.read_file");
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    lua_pushnil(L);
    lua_pushstring(L, sys_error("cannot open", path).c_str());
    return 2;
  }
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t k = read(fd, buf, sizeof buf);
    if (k > 0) {
      data.append(buf, static_cast<size_t>(k));
    } else if (k == 0) {
      break;
    } else if (errno != EINTR) {
      std::string msg = sys_error("cannot read", path);
      close(fd);
      lua_pushnil(L);
      lua_pushstring(L, msg.c_str());
      return 2;
    }
  }
  close(fd);
  lua_pushlstring(L, data.data(), data.size());
  return 1;
}

int l_write_file_atomic(lua_State* L) {
  std::string path = check_path(L, 1, "flare.fs.write_file_atomic", true);
  std::string_view data = check_string(L, 2, "flare.fs.write_file_atomic", "data");
  try {
    write_file_atomic(path, std::as_bytes(std::span(data.data(), data.size())), /*durable=*/true);
  } catch (const flare::Error& e) {
    throw flare::Error(e.code, std::string("flare.fs.write_file_atomic: ") + e.what());
  }
  return 0;
}

int l_append_line(lua_State* L) {
  std::string path = check_path(L, 1, "flare.fs.append_line", true);
  std::string line(check_string(L, 2, "flare.fs.append_line", "line"));
  if (line.find('\n') != std::string::npos) {
    raise_invalid("flare.fs.append_line", "argument 'line' contains a newline (byte offset " +
                                              std::to_string(line.find('\n')) + ")");
  }
  line += '\n';
  bool sync = opt_flag(L, 3, "flare.fs.append_line", "fsync");
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("flare.fs.append_line: " + sys_error("cannot open", path));
  try {
    write_all(fd, line.data(), line.size(), path);
    if (sync && fsync(fd) != 0) throw std::runtime_error(sys_error("cannot fsync", path));
  } catch (const std::exception& e) {
    close(fd);
    throw std::runtime_error(std::string("flare.fs.append_line: ") + e.what());
  }
  close(fd);
  return 0;
}

int l_remove(lua_State* L) {
  std::string path = check_path(L, 1, "flare.fs.remove", true);
  bool recursive = opt_flag(L, 2, "flare.fs.remove", "recursive");
  std::error_code ec;
  bool removed;
  if (recursive) {
    removed = stdfs::remove_all(path, ec) > 0;
  } else {
    removed = stdfs::remove(path, ec);
  }
  if (ec)
    throw std::runtime_error("flare.fs.remove: cannot remove '" + path + "': " + ec.message());
  lua_pushboolean(L, removed);
  return 1;
}

int l_sha256(lua_State* L) {
  std::string_view data = check_string(L, 1, "flare.fs.sha256", "data");
  flare::Sha256 h;
  h.update(data.data(), data.size());
  lua_pushstring(L, h.hex_digest().c_str());
  return 1;
}

int l_sha256_file(lua_State* L) {
  std::string path = check_path(L, 1, "flare.fs.sha256_file");
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("flare.fs.sha256_file: " + sys_error("cannot open", path));
  flare::Sha256 h;
  char buf[65536];
  for (;;) {
    ssize_t k = read(fd, buf, sizeof buf);
    if (k > 0) {
      h.update(buf, static_cast<size_t>(k));
    } else if (k == 0) {
      break;
    } else if (errno != EINTR) {
      std::string msg = sys_error("cannot read", path);
      close(fd);
      throw std::runtime_error("flare.fs.sha256_file: " + msg);
    }
  }
  close(fd);
  lua_pushstring(L, h.hex_digest().c_str());
  return 1;
}

int l_getpid(lua_State* L) {
  lua_pushinteger(L, getpid());
  return 1;
}

int l_isatty(lua_State* L) {
  auto fd = check_integer(L, 1, "flare.fs.isatty", "fd", 0);
  lua_pushboolean(L, isatty(static_cast<int>(fd)) == 1);
  return 1;
}

int l_cwd(lua_State* L) {
  std::error_code ec;
  auto p = stdfs::current_path(ec);
  if (ec) throw std::runtime_error("flare.fs.cwd: " + ec.message());
  lua_pushstring(L, p.string().c_str());
  return 1;
}

int open_fs(lua_State* L) {
  const luaL_Reg fns[] = {
      {"mkdir_p", l_mkdir_p},
      {"exists", l_exists},
      {"is_dir", l_is_dir},
      {"list_dir", l_list_dir},
      {"read_file", l_read_file},
      {"write_file_atomic", l_write_file_atomic},
      {"append_line", l_append_line},
      {"remove", l_remove},
      {"sha256", l_sha256},
      {"sha256_file", l_sha256_file},
      {"getpid", l_getpid},
      {"isatty", l_isatty},
      {"cwd", l_cwd},
      {nullptr, nullptr},
  };
  push_functions(L, fns);
  return 1;
}

}  // namespace
}  // namespace flare::lua

FLARE_LUA_MODULE(fs, flare::lua::open_fs);
