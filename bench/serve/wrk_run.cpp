#include "wrk_run.hpp"

#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <stdexcept>

#include "load.hpp"

namespace flare::bench {

namespace {

// A Lua long string that cannot be closed early by the body's own text.
std::string lua_long_string(const std::string& s) {
  std::string eq;
  while (s.find("]" + eq + "]") != std::string::npos) eq += "=";
  return "[" + eq + "[" + s + "]" + eq + "]";
}

long count_after(const std::string& text, const std::string& pattern) {
  std::smatch m;
  if (std::regex_search(text, m, std::regex(pattern))) return std::stol(m[1].str());
  return 0;
}

}  // namespace

WrkResult run_wrk(const std::string& url, const std::string& bearer, const std::string& json_body,
                  int connections, int threads, int seconds, int server_pid) {
  const auto script = std::filesystem::temp_directory_path() /
                      ("flare-bench-wrk-" + std::to_string(getpid()) + ".lua");
  {
    std::ofstream lua(script);
    lua << "wrk.method = \"POST\"\n"
        << "wrk.headers[\"Content-Type\"] = \"application/json\"\n"
        << "wrk.headers[\"Authorization\"] = " << lua_long_string("Bearer " + bearer) << "\n"
        << "wrk.body = " << lua_long_string(json_body) << "\n";
  }
  const std::string cmd = "wrk -t" + std::to_string(threads) + " -c" + std::to_string(connections) +
                          " -d" + std::to_string(seconds) + "s -s " + script.string() + " " + url +
                          " 2>&1";
  WrkResult r;
  const double cpu0 = process_cpu_seconds(server_pid);
  const double machine0 = machine_cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("cannot run wrk");
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.raw.append(buf.data(), n);
  const int rc = pclose(p);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.cpu_seconds = process_cpu_seconds(server_pid) - cpu0;
  r.machine_seconds = machine_cpu_seconds() - machine0;
  std::filesystem::remove(script);
  if (rc != 0) throw std::runtime_error("wrk failed:\n" + r.raw);

  std::smatch m;
  if (!std::regex_search(r.raw, m, std::regex(R"(Requests/sec:\s+([0-9.]+))")))
    throw std::runtime_error("no Requests/sec in wrk output:\n" + r.raw);
  r.requests_per_second = std::stod(m[1].str());
  r.requests = count_after(r.raw, R"((\d+) requests in)");
  r.non_2xx = count_after(r.raw, R"(Non-2xx or 3xx responses:\s+(\d+))");
  if (std::regex_search(r.raw, m,
                        std::regex(R"(connect (\d+), read (\d+), write (\d+), timeout (\d+))")))
    for (int i = 1; i <= 4; ++i) r.socket_errors += std::stol(m[i].str());
  return r;
}

}  // namespace flare::bench
