#include "module_trees.hpp"

#include <cstdlib>
#include <filesystem>

namespace flare::lua {
namespace fs = std::filesystem;
namespace {

void append_dir(std::string& path, const std::string& dir) {
  std::string d = dir.empty() ? "." : dir;
  if (d.size() > 1 && d.back() == '/') d.pop_back();
  path += d + "/?.lua;" + d + "/?/init.lua;";
}

}  // namespace

std::vector<RockTree> rock_trees() {
  std::vector<RockTree> trees;
  std::error_code ec;
  fs::path cwd = fs::current_path(ec);
  if (!ec) trees.push_back({"project", (cwd / "lua_modules").string()});
  const char* home = std::getenv("HOME");
  if (home && *home) trees.push_back({"user", (fs::path(home) / ".luarocks").string()});
  trees.push_back({"system", "/usr/local"});
  return trees;
}

std::vector<std::string> flare_path_dirs() {
  std::vector<std::string> dirs;
  const char* extra = std::getenv("FLARE_PATH");
  if (!extra) return dirs;
  std::string s = extra;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(';', start);
    if (end == std::string::npos) end = s.size();
    if (end > start) dirs.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return dirs;
}

std::string lua_search_path(const std::string& script_dir, const std::string& stdlib) {
  std::string path;
  append_dir(path, script_dir);
  for (const auto& t : rock_trees()) append_dir(path, t.root + "/share/lua/5.1");
  for (const auto& d : flare_path_dirs()) append_dir(path, d);
  append_dir(path, stdlib);
  return path;
}

std::string c_search_path() {
  std::string path;
  for (const auto& t : rock_trees()) path += t.root + "/lib/lua/5.1/?.so;";
  return path;
}

}  // namespace flare::lua
