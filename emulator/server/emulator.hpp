#pragma once
// flare's local emulator of the Fireworks training REST protocol: control
// plane on SQLite, bucket directories, base and delta hotload, completions
// from a tiny transformer and a trainer, over real HTTP on loopback.
#include <memory>
#include <string>

namespace flare::emulator {

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;           // 0 = free port
  std::string state_dir;  // empty = a fresh temporary directory, removed by the destructor
  std::string api_key;    // empty = generate and store mode 0600 in state_dir
  double provision_delay_s = 0.5;
  std::string faults;  // see faults.hpp
  bool log_requests = false;
  double idle_timeout_s = 300;  // a min-0 replica idle this long scales down
};

class Emulator {
 public:
  explicit Emulator(Options);
  ~Emulator();
  Emulator(const Emulator&) = delete;
  Emulator& operator=(const Emulator&) = delete;

  void start();  // binds and serves on background threads; returns once listening
  void stop();   // finish in-flight requests, close the DB
  int port() const;
  std::string base_url() const;
  std::string api_key() const;
  std::string account_id() const;
  std::string state_dir() const;
  std::string api_key_path() const;  // where a generated key is stored; "" when given

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace flare::emulator
