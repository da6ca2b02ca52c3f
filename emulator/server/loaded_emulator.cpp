#include "emulator/server/loaded_emulator.hpp"

#include "emulator/server/plugin_abi.h"
#include "runtime/error.hpp"
#include "runtime/shared_library.hpp"

#ifndef FLARE_INSTALL_LIBDIR
#define FLARE_INSTALL_LIBDIR "/usr/local/lib/flare"
#endif

namespace flare::emulator {
namespace {

constexpr const char* kModule = "libflare-emulator.so";

// Next to the program (the build dir), under ../lib/flare of it (an
// installed tree moved elsewhere), then the configured install dir.
SharedLibrary& module() {
  static SharedLibrary lib(
      {executable_dir() + "/" + kModule, executable_dir() + "/../lib/flare/" + kModule,
       std::string(FLARE_INSTALL_LIBDIR) + "/" + kModule},
      "the local emulator");
  return lib;
}

template <class F>
F* fn(const char* name) {
  return module().function<F>(name);
}

}  // namespace

LoadedEmulator::LoadedEmulator(const Options& o) {
  flare_emulator_options options{};
  options.abi_version = FLARE_EMULATOR_ABI_VERSION;
  options.host = o.host.c_str();
  options.port = o.port;
  options.state_dir = o.state_dir.c_str();
  options.api_key = o.api_key.c_str();
  options.provision_delay_s = o.provision_delay_s;
  options.faults = o.faults.c_str();
  options.log_requests = o.log_requests ? 1 : 0;
  options.idle_timeout_s = o.idle_timeout_s;
  flare_emulator_error error{};
  emulator_ = fn<decltype(flare_emulator_start)>("flare_emulator_start")(&options, &error);
  if (!emulator_) throw Error(error.code, error.message);
}

LoadedEmulator::~LoadedEmulator() {
  stop();
}

void LoadedEmulator::stop() {
  if (!emulator_) return;
  fn<decltype(flare_emulator_stop)>("flare_emulator_stop")(emulator_);
  emulator_ = nullptr;
}

std::string LoadedEmulator::field(const char* name) const {
  if (!emulator_) throw Error("invalid_argument", "the emulator was stopped");
  const char* value = fn<decltype(flare_emulator_field)>("flare_emulator_field")(emulator_, name);
  return value ? value : "";
}

int LoadedEmulator::port() const {
  if (!emulator_) throw Error("invalid_argument", "the emulator was stopped");
  return fn<decltype(flare_emulator_port)>("flare_emulator_port")(emulator_);
}
std::string LoadedEmulator::base_url() const {
  return field("base_url");
}
std::string LoadedEmulator::api_key() const {
  return field("api_key");
}
std::string LoadedEmulator::account_id() const {
  return field("account_id");
}
std::string LoadedEmulator::state_dir() const {
  return field("state_dir");
}
std::string LoadedEmulator::api_key_path() const {
  return field("api_key_path");
}

std::string sqlite_version() {
  return fn<decltype(flare_emulator_sqlite_version)>("flare_emulator_sqlite_version")();
}

}  // namespace flare::emulator
