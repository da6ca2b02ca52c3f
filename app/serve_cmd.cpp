// flare serve: the local emulator as a standalone server.
#include <poll.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "emulator/server/loaded_emulator.hpp"
#include "runtime/interrupt.hpp"
#include "runtime/key_file.hpp"
#include "subcommand.hpp"

namespace {

void usage(FILE* out) {
  std::fprintf(
      out,
      "usage: flare serve [--host 127.0.0.1] [--port N] [--state-dir DIR] [--api-key-file FILE]\n"
      "                   [--provision-delay S] [--idle-timeout S] [--faults SPEC] [--log]\n"
      "\n"
      "The state dir defaults to $XDG_STATE_HOME/flare/emulator (~/.local/state/...).\n"
      "Runs flare's local emulator of the Fireworks training API until SIGINT/SIGTERM.\n"
      "The API key: the first line of --api-key-file, else $FLARE_EMULATOR_API_KEY, else one\n"
      "generated and stored (mode 0600) in the state dir. --api-key KEY also works but every\n"
      "user can read it in the process list.\n"
      "--faults takes rules 'PREFIX:KIND[:key=value]...' separated by ';', KIND one of\n"
      "429, 500, 503, reset, delay, truncate (or several joined by |, one picked per hit);\n"
      "keys rate, seed, count, retry_after, delay_ms.\n");
}

bool parse_number(const char* s, double* out) {
  char* end = nullptr;
  *out = std::strtod(s, &end);
  return end && *end == '\0' && end != s;
}

// $XDG_STATE_HOME/flare/emulator, else ~/.local/state/flare/emulator.
std::string default_state_dir() {
  if (const char* x = std::getenv("XDG_STATE_HOME"); x && *x)
    return std::string(x) + "/flare/emulator";
  if (const char* h = std::getenv("HOME"); h && *h)
    return std::string(h) + "/.local/state/flare/emulator";
  return ".flare-emulator";
}

int serve_main(int argc, char** argv) {
  flare::emulator::Options opt;
  opt.state_dir = default_state_dir();
  std::string key_source;  // where opt.api_key came from, for the banner
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    }
    std::string value;
    auto eq = a.find('=');
    if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else if (a == "--log") {
      opt.log_requests = true;
      continue;
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      std::fprintf(stderr, "flare serve: %s needs a value\n", a.c_str());
      usage(stderr);
      return 2;
    }
    double num = 0;
    if (a == "--host") {
      opt.host = value;
    } else if (a == "--port") {
      if (!parse_number(value.c_str(), &num) || num < 0 || num > 65535 ||
          num != static_cast<int>(num)) {
        std::fprintf(stderr, "flare serve: --port must be an integer in 0..65535, got '%s'\n",
                     value.c_str());
        return 2;
      }
      opt.port = static_cast<int>(num);
    } else if (a == "--state-dir") {
      opt.state_dir = value;
    } else if (a == "--api-key") {
      std::fprintf(stderr,
                   "flare serve: warning: --api-key is visible to every user in the process "
                   "list; prefer --api-key-file FILE or $FLARE_EMULATOR_API_KEY\n");
      opt.api_key = value;
      key_source = "--api-key";
    } else if (a == "--api-key-file") {
      flare::KeyFile f = flare::read_key_file(value);
      if (!f.exists || f.key.empty()) {
        std::fprintf(stderr, "flare serve: --api-key-file %s: %s\n", value.c_str(),
                     f.exists ? "its first line is empty" : std::strerror(errno));
        return 2;
      }
      if (!f.warning.empty()) std::fprintf(stderr, "flare serve: warning: %s\n", f.warning.c_str());
      if (key_source != "--api-key") {
        opt.api_key = f.key;
        key_source = "--api-key-file";
      }
    } else if (a == "--provision-delay" || a == "--idle-timeout") {
      if (!parse_number(value.c_str(), &num) || num < 0) {
        std::fprintf(stderr, "flare serve: %s must be a number of seconds >= 0, got '%s'\n",
                     a.c_str(), value.c_str());
        return 2;
      }
      (a == "--provision-delay" ? opt.provision_delay_s : opt.idle_timeout_s) = num;
    } else if (a == "--faults") {
      opt.faults = value;
    } else {
      std::fprintf(stderr, "flare serve: unknown option '%s'\n", a.c_str());
      usage(stderr);
      return 2;
    }
  }

  if (opt.api_key.empty()) {
    if (const char* env = std::getenv("FLARE_EMULATOR_API_KEY"); env && *env) {
      opt.api_key = env;
      key_source = "$FLARE_EMULATOR_API_KEY";
    }
  }

  flare::interrupt::install_handlers();
  try {
    flare::emulator::LoadedEmulator emu(opt);
    std::printf("flare emulator listening on %s (account %s)\n", emu.base_url().c_str(),
                emu.account_id().c_str());
    std::printf("state dir: %s\n", emu.state_dir().c_str());
    if (!emu.api_key_path().empty()) {
      std::printf("API key stored in %s\n", emu.api_key_path().c_str());
    } else {
      std::printf("API key: the one given with %s\n", key_source.c_str());
    }
    // The key itself is never printed: the line reads it from its file.
    std::printf("clients: FIREWORKS_BASE_URL=%s FIREWORKS_API_KEY=%s flare run SCRIPT\n",
                emu.base_url().c_str(),
                emu.api_key_path().empty() ? ("<the key of " + key_source + ">").c_str()
                                           : ("\"$(cat '" + emu.api_key_path() + "')\"").c_str());
    std::fflush(stdout);
    while (!flare::interrupt::pending()) {
      pollfd p{flare::interrupt::wake_fd(), POLLIN, 0};
      ::poll(&p, 1, 1000);
    }
    int sig = flare::interrupt::signal_number();
    flare::interrupt::clear();
    std::printf("%s received, finishing requests in flight\n", sig == 15 ? "SIGTERM" : "SIGINT");
    std::fflush(stdout);
    emu.stop();
    std::printf("stopped\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flare serve: %s\n", e.what());
    return 1;
  }
  return 0;
}

}  // namespace

FLARE_SUBCOMMAND(serve, "run the local emulator of the Fireworks API", serve_main);
