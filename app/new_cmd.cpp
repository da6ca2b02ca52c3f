// flare new module NAME [--dir DIR]: a shareable workflow module (a rock) to start from.
#include <cstdio>
#include <string>
#include <vector>

#include "host.hpp"
#include "subcommand.hpp"

namespace {

int new_usage(const std::string& msg) {
  std::fprintf(stderr, "flare: new: %s (usage: flare new module NAME [--dir DIR])\n", msg.c_str());
  return 2;
}

int new_main(int argc, char** argv) {
  if (argc < 2) return new_usage("say what to create");
  if (std::string(argv[1]) != "module") {
    return new_usage("unknown kind '" + std::string(argv[1]) + "' (only module)");
  }
  std::string name, dir;
  for (int i = 2; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--dir") {
      if (i + 1 >= argc) return new_usage("--dir needs a folder");
      dir = argv[++i];
    } else if (a.rfind("--dir=", 0) == 0) {
      dir = a.substr(6);
    } else if (!a.empty() && a[0] == '-') {
      return new_usage("unknown option '" + a + "'");
    } else if (name.empty()) {
      name = a;
    } else {
      return new_usage("one NAME only");
    }
  }
  if (name.empty()) return new_usage("a module needs a NAME");
  flare::lua::Host host;
  return host.run_string(
      "local name, dir = ...\n"
      "local ok, files = pcall(require('flare.scaffold').module, name, dir ~= '' and dir or nil)\n"
      "if not ok then\n"
      "  local e = type(files) == 'table' and files.message or tostring(files)\n"
      "  io.stderr:write('flare: ', e, '\\n')\n"
      "  os.exit(1)\n"
      "end\n"
      "for _, f in ipairs(files) do print('created ' .. f) end\n"
      "local d = dir ~= '' and dir or name\n"
      "print('next: cd ' .. d .. ' && flare test ' .. name:gsub('-', '_') .. '_spec.lua' ..\n"
      "  ' (README.md says how to publish it)')",
      "=(flare new)", {name, dir});
}

}  // namespace

FLARE_SUBCOMMAND(new, "scaffold a shareable workflow module: flare new module NAME", new_main);
