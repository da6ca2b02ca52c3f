// libflare-emulator.so: the emulator behind the C interface of plugin_abi.h.
#include <sqlite3.h>

#include <cstdio>
#include <map>
#include <stdexcept>

#include "emulator/server/emulator.hpp"
#include "emulator/server/plugin_abi.h"
#include "runtime/error.hpp"

struct flare_emulator {
  flare::emulator::Emulator server;
  std::map<std::string, std::string, std::less<>> fields;

  explicit flare_emulator(flare::emulator::Options o) : server(std::move(o)) {}
};

namespace {

void fill(flare_emulator_error* error, const char* code, const char* message) {
  if (!error) return;
  std::snprintf(error->code, sizeof error->code, "%s", code);
  std::snprintf(error->message, sizeof error->message, "%s", message);
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) flare_emulator* flare_emulator_start(
    const flare_emulator_options* options, flare_emulator_error* error) {
  if (!options || options->abi_version != FLARE_EMULATOR_ABI_VERSION) {
    fill(error, "emulator_failed", "libflare-emulator.so does not match this flare program");
    return nullptr;
  }
  flare::emulator::Options o;
  if (options->host) o.host = options->host;
  o.port = options->port;
  if (options->state_dir) o.state_dir = options->state_dir;
  if (options->api_key) o.api_key = options->api_key;
  o.provision_delay_s = options->provision_delay_s;
  if (options->faults) o.faults = options->faults;
  o.log_requests = options->log_requests != 0;
  o.idle_timeout_s = options->idle_timeout_s;
  try {
    auto emulator = std::make_unique<flare_emulator>(std::move(o));
    emulator->server.start();
    auto& s = emulator->server;
    emulator->fields = {{"base_url", s.base_url()},
                        {"api_key", s.api_key()},
                        {"account_id", s.account_id()},
                        {"state_dir", s.state_dir()},
                        {"api_key_path", s.api_key_path()}};
    return emulator.release();
  } catch (const flare::Error& e) {
    fill(error, e.code.c_str(), e.what());
  } catch (const std::invalid_argument& e) {
    fill(error, "invalid_argument", e.what());
  } catch (const std::exception& e) {
    fill(error, "emulator_failed", e.what());
  }
  return nullptr;
}

__attribute__((visibility("default"))) const char* flare_emulator_field(
    const flare_emulator* emulator, const char* field) {
  auto it = emulator->fields.find(field);
  return it == emulator->fields.end() ? nullptr : it->second.c_str();
}

__attribute__((visibility("default"))) int flare_emulator_port(const flare_emulator* emulator) {
  return emulator->server.port();
}

__attribute__((visibility("default"))) void flare_emulator_stop(flare_emulator* emulator) {
  if (!emulator) return;
  try {
    emulator->server.stop();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flare emulator: while stopping: %s\n", e.what());
  }
  delete emulator;
}

__attribute__((visibility("default"))) const char* flare_emulator_sqlite_version(void) {
  return sqlite3_libversion();
}

}  // extern "C"
