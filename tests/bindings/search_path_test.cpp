#include <doctest/doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "lua_eval.hpp"

namespace fs = std::filesystem;

namespace {
void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}
}  // namespace

TEST_CASE("require searches the script directory, then FLARE_PATH, then the stdlib") {
  fs::path root = fs::temp_directory_path() / ("flare-path-" + std::to_string(getpid()));
  fs::remove_all(root);
  write(root / "script/shared.lua", "return 'script dir'");
  write(root / "team_a/shared.lua", "return 'team a'");
  write(root / "team_a/only_a.lua", "return 'team a only'");
  write(root / "team_b/only_a.lua", "return 'team b'");
  write(root / "team_b/pkg/init.lua", "return 'init of pkg'");
  std::string flare_path = (root / "team_a").string() + ";" + (root / "team_b").string();
  setenv("FLARE_PATH", flare_path.c_str(), 1);
  {
    flare::lua::Host h((root / "script").string());
    CHECK(
        eval(h,
             "a = require('shared'); b = require('only_a'); c = require('pkg');"
             "d = tostring(require('flare') == flare); e = type(require('flare.test').run_file)") ==
        "");
    CHECK(global_string(h, "a") == "script dir");
    CHECK(global_string(h, "b") == "team a only");
    CHECK(global_string(h, "c") == "init of pkg");
    CHECK(global_string(h, "d") == "true");
    CHECK(global_string(h, "e") == "function");
  }
  unsetenv("FLARE_PATH");
  fs::remove_all(root);
}

TEST_CASE("a module that errors while loading reports the module's file and line") {
  fs::path root = fs::temp_directory_path() / ("flare-bad-" + std::to_string(getpid()));
  write(root / "broken.lua", "local x = 1\nerror('broken on purpose')\n");
  flare::lua::Host h(root.string());
  std::string err = eval(h, "require('broken')");
  CHECK(err.find("broken.lua:2: broken on purpose") != std::string::npos);
  fs::remove_all(root);
}
