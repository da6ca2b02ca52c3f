#include "load.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace flare::bench {

LoadResult run_closed_loop(int concurrency, double duration_s,
                           const std::function<long(int, long)>& send,
                           const std::function<double()>& cpu_now) {
  using Clock = std::chrono::steady_clock;
  std::atomic<long> requests{0}, tokens{0}, failures{0};
  const double cpu0 = cpu_now();
  const double machine0 = machine_cpu_seconds();
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(duration_s);
  std::vector<std::thread> clients;
  for (int c = 0; c < concurrency; ++c) {
    clients.emplace_back([&, c] {
      for (long i = 0; Clock::now() < deadline; ++i) {
        const long n = send(c, i);
        if (n < 0) {
          failures++;
        } else {
          requests++;
          tokens += n;
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  LoadResult r;
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  r.cpu_seconds = cpu_now() - cpu0;
  r.machine_seconds = machine_cpu_seconds() - machine0;
  r.requests = requests;
  r.completion_tokens = tokens;
  r.failures = failures;
  return r;
}

double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + u.ru_stime.tv_sec +
         u.ru_stime.tv_usec * 1e-6;
}

double process_cpu_seconds(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stod(field);
    if (i == 15) stime = std::stod(field);
  }
  return (utime + stime) / double(sysconf(_SC_CLK_TCK));
}

double machine_cpu_seconds() {
  std::ifstream in("/proc/stat");
  std::string label;
  in >> label;  // "cpu": user nice system idle iowait irq softirq steal ...
  double busy = 0;
  long long v;
  for (int i = 0; i < 8 && in >> v; ++i)
    if (i != 3 && i != 4) busy += double(v);  // all but idle and iowait
  return busy / double(sysconf(_SC_CLK_TCK));
}

}  // namespace flare::bench
