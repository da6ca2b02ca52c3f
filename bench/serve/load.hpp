#pragma once
// Closed-loop load: `concurrency` clients each send one request after another
// until the deadline; a request started before the deadline is completed.
#include <functional>

namespace flare::bench {

struct LoadResult {
  long requests = 0;
  long completion_tokens = 0;
  long failures = 0;
  double seconds = 0;
  double cpu_seconds = 0;      // CPU time of the serving process over the run
  double machine_seconds = 0;  // CPU time of the whole machine (every process) over the run
  double tokens_per_second() const { return seconds > 0 ? completion_tokens / seconds : 0; }
  double requests_per_second() const { return seconds > 0 ? requests / seconds : 0; }
  double cores_busy() const { return seconds > 0 ? cpu_seconds / seconds : 0; }
  double machine_cores_busy() const { return seconds > 0 ? machine_seconds / seconds : 0; }
};

// `send(client, i)` performs request i of client `client` and returns its
// completion token count, or -1 when it failed. `cpu_now()` reads the CPU time
// of whatever serves the requests.
LoadResult run_closed_loop(int concurrency, double duration_s,
                           const std::function<long(int client, long i)>& send,
                           const std::function<double()>& cpu_now);

// CPU time (user + system) of this process / of another process, in seconds.
double process_cpu_seconds();
double process_cpu_seconds(int pid);
// Busy CPU time of all cores together since boot (/proc/stat), in seconds.
double machine_cpu_seconds();

}  // namespace flare::bench
