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

#include "module.hpp"
#include "runtime/sha256.hpp"

namespace flare::lua {
namespace {

namespace stdfs = std::filesystem;

std::string sys_error(const std::string& what, const std::string& path) {
  return what + " '" + path + "': " + std::strerror(errno);
}

std::string check_path(lua_State* L, int idx, const char* fn) {
  if (lua_type(L, idx) != LUA_TSTRING) {
    throw std::runtime_error(std::string("fs.") + fn + ": the path must be a string");
  }
  size_t len;
  const char* s = lua_tolstring(L, idx, &len);
  if (len == 0) throw std::runtime_error(std::string("fs.") + fn + ": the path is empty");
  return std::string(s, len);
}

bool opt_flag(lua_State* L, int idx, const char* name) {
  if (!lua_istable(L, idx)) return false;
  lua_getfield(L, idx, name);
  bool v = lua_toboolean(L, -1);
  lua_pop(L, 1);
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

void fsync_dir_of(const std::string& path) {
  stdfs::path parent = stdfs::path(path).parent_path();
  int fd = open(parent.empty() ? "." : parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

int l_mkdir_p(lua_State* L) {
  std::string path = check_path(L, 1, "mkdir_p");
  std::error_code ec;
  stdfs::create_directories(path, ec);
  if (ec || !stdfs::is_directory(path)) {
    throw std::runtime_error("fs.mkdir_p: cannot create '" + path +
                             "': " + (ec ? ec.message() : "not a directory"));
  }
  return 0;
}

int l_exists(lua_State* L) {
  std::error_code ec;
  lua_pushboolean(L, stdfs::exists(check_path(L, 1, "exists"), ec));
  return 1;
}

int l_is_dir(lua_State* L) {
  std::error_code ec;
  lua_pushboolean(L, stdfs::is_directory(check_path(L, 1, "is_dir"), ec));
  return 1;
}

int l_list_dir(lua_State* L) {
  std::string path = check_path(L, 1, "list_dir");
  std::error_code ec;
  std::vector<std::string> names;
  for (auto it = stdfs::directory_iterator(path, ec); !ec && it != stdfs::directory_iterator();
       it.increment(ec)) {
    names.push_back(it->path().filename().string());
  }
  if (ec) throw std::runtime_error("fs.list_dir: cannot list '" + path + "': " + ec.message());
  std::sort(names.begin(), names.end());
  lua_createtable(L, static_cast<int>(names.size()), 0);
  for (size_t i = 0; i < names.size(); i++) {
    lua_pushlstring(L, names[i].data(), names[i].size());
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
  return 1;
}

int l_read_file(lua_State* L) {
  std::string path = check_path(L, 1, "read_file");
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
  std::string path = check_path(L, 1, "write_file_atomic");
  size_t len;
  const char* data = luaL_checklstring(L, 2, &len);
  std::string tmp = path + ".tmp." + std::to_string(getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("fs.write_file_atomic: " + sys_error("cannot create", tmp));
  try {
    write_all(fd, data, len, tmp);
    if (fsync(fd) != 0) throw std::runtime_error(sys_error("cannot fsync", tmp));
  } catch (const std::exception& e) {
    close(fd);
    unlink(tmp.c_str());
    throw std::runtime_error(std::string("fs.write_file_atomic: ") + e.what());
  }
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    std::string msg = sys_error("cannot rename onto", path);
    unlink(tmp.c_str());
    throw std::runtime_error("fs.write_file_atomic: " + msg);
  }
  fsync_dir_of(path);
  return 0;
}

int l_append_line(lua_State* L) {
  std::string path = check_path(L, 1, "append_line");
  size_t len;
  const char* data = luaL_checklstring(L, 2, &len);
  std::string line(data, len);
  if (line.find('\n') != std::string::npos) {
    throw std::runtime_error("fs.append_line: the line contains a newline (byte offset " +
                             std::to_string(line.find('\n')) + ")");
  }
  line += '\n';
  bool sync = opt_flag(L, 3, "fsync");
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("fs.append_line: " + sys_error("cannot open", path));
  try {
    write_all(fd, line.data(), line.size(), path);
    if (sync && fsync(fd) != 0) throw std::runtime_error(sys_error("cannot fsync", path));
  } catch (const std::exception& e) {
    close(fd);
    throw std::runtime_error(std::string("fs.append_line: ") + e.what());
  }
  close(fd);
  return 0;
}

int l_remove(lua_State* L) {
  std::string path = check_path(L, 1, "remove");
  bool recursive = opt_flag(L, 2, "recursive");
  std::error_code ec;
  bool removed;
  if (recursive) {
    removed = stdfs::remove_all(path, ec) > 0;
  } else {
    removed = stdfs::remove(path, ec);
  }
  if (ec) throw std::runtime_error("fs.remove: cannot remove '" + path + "': " + ec.message());
  lua_pushboolean(L, removed);
  return 1;
}

int l_sha256(lua_State* L) {
  size_t len;
  const char* data = luaL_checklstring(L, 1, &len);
  flare::Sha256 h;
  h.update(data, len);
  lua_pushstring(L, h.hex_digest().c_str());
  return 1;
}

int l_sha256_file(lua_State* L) {
  std::string path = check_path(L, 1, "sha256_file");
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("fs.sha256_file: " + sys_error("cannot open", path));
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
      throw std::runtime_error("fs.sha256_file: " + msg);
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
  lua_pushboolean(L, isatty(static_cast<int>(luaL_checkinteger(L, 1))) == 1);
  return 1;
}

int l_cwd(lua_State* L) {
  std::error_code ec;
  auto p = stdfs::current_path(ec);
  if (ec) throw std::runtime_error("fs.cwd: " + ec.message());
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
  lua_createtable(L, 0, 16);
  luaL_register(L, nullptr, fns);
  return 1;
}

}  // namespace
}  // namespace flare::lua

FLARE_LUA_MODULE(fs, flare::lua::open_fs);
