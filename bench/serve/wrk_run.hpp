#pragma once
// Runs wrk against a POST endpoint with a JSON body (through a small Lua
// script, since wrk sends GET without one) and reads its summary.
#include <string>

namespace flare::bench {

struct WrkResult {
  double requests_per_second = 0;
  long requests = 0;
  long non_2xx = 0;
  long socket_errors = 0;
  double cpu_seconds = 0;      // CPU time of the server process during the run
  double machine_seconds = 0;  // CPU time of the whole machine during the run
  double seconds = 0;
  std::string raw;  // wrk's output, for diagnosis
};

WrkResult run_wrk(const std::string& url, const std::string& bearer, const std::string& json_body,
                  int connections, int threads, int seconds, int server_pid);

}  // namespace flare::bench
