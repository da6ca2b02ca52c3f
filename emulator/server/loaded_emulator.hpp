#pragma once
// The emulator as the flare program runs it: from libflare-emulator.so,
// opened the first time a script or `flare serve` starts one, so that scripts
// which never start an emulator do not pay for loading its HTTP server,
// OpenSSL and SQLite. Same behaviour as Emulator (emulator.hpp).
#include <string>

#include "emulator/server/emulator.hpp"

struct flare_emulator;

namespace flare::emulator {

class LoadedEmulator {
 public:
  // Starts at once; throws flare::Error ("invalid_argument", "emulator_failed",
  // "library_missing").
  explicit LoadedEmulator(const Options& options);
  ~LoadedEmulator();
  LoadedEmulator(const LoadedEmulator&) = delete;
  LoadedEmulator& operator=(const LoadedEmulator&) = delete;

  void stop();  // finish in-flight requests, close the DB; idempotent
  int port() const;
  std::string base_url() const;
  std::string api_key() const;
  std::string account_id() const;
  std::string state_dir() const;
  std::string api_key_path() const;

 private:
  std::string field(const char* name) const;
  flare_emulator* emulator_ = nullptr;
};

// The SQLite version the emulator module runs on.
std::string sqlite_version();

}  // namespace flare::emulator
