#include "module_checks.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace flare::cli {
namespace fs = std::filesystem;
namespace {

const char* const kLockFile = "luarocks.lock";

int replay_usage(const std::string& msg) {
  std::fprintf(stderr, "flare: run: %s (usage: flare run --replay RUN_DIR [--force])\n",
               msg.c_str());
  return 2;
}

struct RunRecord {
  std::string script;
  std::vector<std::string> args;
};

// The script and arguments of a run from its config.json; an empty script and a
// message on stderr when the record cannot be used.
RunRecord read_record(const std::string& run_dir) {
  std::string path = (fs::path(run_dir) / "config.json").string();
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "flare: run --replay: cannot read %s\n", path.c_str());
    return {};
  }
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json cfg;
  try {
    cfg = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::parse_error& e) {
    std::fprintf(stderr, "flare: run --replay: %s is not JSON (byte offset %zu)\n", path.c_str(),
                 e.byte);
    return {};
  }
  RunRecord r;
  if (!cfg.is_object() || !cfg.contains("script") || !cfg["script"].is_string()) {
    std::fprintf(stderr, "flare: run --replay: %s has no field 'script' (a string)\n",
                 path.c_str());
    return {};
  }
  for (const auto& a : cfg.value("args", nlohmann::json::array())) {
    if (!a.is_string()) {
      std::fprintf(stderr, "flare: run --replay: field 'args' of %s holds a non-string\n",
                   path.c_str());
      return {};
    }
    // A replay is a new run: it does not continue the recorded one.
    std::string s = a.get<std::string>();
    if (s == "--resume" || s.rfind("--resume=", 0) == 0) continue;
    r.args.push_back(s);
  }
  r.script = cfg["script"].get<std::string>();
  return r;
}

}  // namespace

void warn_about_lock(flare::lua::Host& host) {
  std::error_code ec;
  if (!fs::exists(kLockFile, ec)) return;
  host.run_string(
      "for _, line in ipairs(require('flare.modules').lock_warnings(...)) do\n"
      "  io.stderr:write('flare: warning: ', line, '\\n')\n"
      "end",
      "=(luarocks.lock check)", {kLockFile});
}

int replay_main(int argc, char** argv) {
  std::string run_dir;
  bool force = false;
  for (int i = 0; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--force") {
      force = true;
    } else if (a == "--replay") {
      if (i + 1 >= argc) return replay_usage("--replay needs a run directory");
      run_dir = argv[++i];
    } else if (a.rfind("--replay=", 0) == 0) {
      run_dir = a.substr(9);
    } else {
      return replay_usage("unexpected argument '" + a + "': a replay takes the run's own");
    }
  }
  if (run_dir.empty()) return replay_usage("--force goes with --replay RUN_DIR");
  RunRecord rec = read_record(run_dir);
  if (rec.script.empty()) return 1;
  std::error_code ec;
  if (!fs::is_regular_file(rec.script, ec)) {
    std::fprintf(stderr,
                 "flare: run --replay: the run's script %s is not found (run flare in the folder "
                 "the run was started from)\n",
                 rec.script.c_str());
    return 1;
  }
  flare::lua::Host host(fs::path(rec.script).parent_path().string());
  warn_about_lock(host);
  int refused = host.run_string(
      "local run_dir, force = ...\n"
      "local modules = require('flare.modules')\n"
      "modules.replay_of = run_dir\n"
      "local problems = modules.replay_problems_of(run_dir)\n"
      "if #problems == 0 then return end\n"
      "for _, p in ipairs(problems) do\n"
      "  io.stderr:write('flare: run --replay: ', p, '\\n')\n"
      "end\n"
      "if force == '1' then\n"
      "  io.stderr:write('flare: run --replay: --force: running anyway\\n')\n"
      "  return\n"
      "end\n"
      "io.stderr:write('flare: run --replay: refusing to replay ', run_dir,\n"
      "  ': it would not run the code it recorded (--force runs it anyway)\\n')\n"
      "os.exit(1)",
      "=(replay check)", {run_dir, force ? "1" : ""});
  if (refused != 0) return 1;
  std::printf("flare: replaying %s: %s", run_dir.c_str(), rec.script.c_str());
  for (const auto& a : rec.args) std::printf(" %s", a.c_str());
  std::printf("\n");
  std::fflush(stdout);
  return host.run_file(rec.script, rec.args);
}

}  // namespace flare::cli
