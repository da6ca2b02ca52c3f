// bench/serve: completion throughput of tiny-gpt through `flare serve` (HTTP,
// closed-loop clients at concurrency 1, 16, 64, plus 1-token requests/s with
// wrk) beside the same workload on the engine in-process, from one run.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "emulator/engine/engine.hpp"
#include "emulator/model/model.hpp"
#include "flare_server.hpp"
#include "http_client.hpp"
#include "load.hpp"
#include "wrk_run.hpp"

using namespace flare;
using nlohmann::json;

namespace {

struct Options {
  std::string flare_exe = FLARE_DEFAULT_EXE;
  double seconds = 3;
  int max_tokens = 64;
  int wrk_seconds = 5;
  bool in_process_only = false;
};

const char* kPrompt = "The quick brown fox jumps over the lazy dog. ";
const int kLevels[] = {1, 16, 64};
const int kWrkConnections = 64;

void usage(FILE* out) {
  std::fprintf(
      out,
      "usage: bench_serve [--flare PATH] [--seconds S] [--max-tokens N] [--wrk-seconds S]\n"
      "                   [--in-process-only]\n"
      "Completion tokens/s of tiny-gpt at concurrency 1, 16, 64 and 1-token requests/s\n"
      "(wrk, %d connections) through `flare serve`, beside the in-process engine.\n"
      "--flare defaults to %s.\n",
      kWrkConnections, FLARE_DEFAULT_EXE);
}

uint64_t request_seed(int client, long i) {
  return uint64_t(client) * 1000003u + uint64_t(i);
}

struct Row {
  std::string workload;
  int concurrency;
  std::optional<bench::LoadResult> http;
  bench::LoadResult local;
  bool requests_per_second;  // else tokens per second
  long non_2xx = 0;
};

std::string fmt(double v, const char* spec = "%.0f") {
  char buf[64];
  std::snprintf(buf, sizeof buf, spec, v);
  return buf;
}

bench::LoadResult engine_load(engine::Engine& e, int concurrency, double seconds, int max_tokens) {
  const std::vector<int> prompt = model::encode_text(kPrompt);
  return bench::run_closed_loop(
      concurrency, seconds,
      [&](int client, long i) -> long {
        engine::SamplingParams p;
        p.max_tokens = max_tokens;
        p.temperature = 1.0;
        p.seed = request_seed(client, i);
        return e.complete(prompt, p).completion_tokens;
      },
      [] { return bench::process_cpu_seconds(); });
}

json completion_body(const std::string& model_name, int max_tokens, std::optional<uint64_t> seed) {
  json b = {
      {"model", model_name}, {"prompt", kPrompt}, {"max_tokens", max_tokens}, {"temperature", 1.0}};
  if (seed) b["seed"] = *seed;
  return b;
}

bench::LoadResult http_load(const bench::FlareServer& srv, const std::string& model_name,
                            int concurrency, double seconds, int max_tokens, std::string* error) {
  std::vector<std::unique_ptr<bench::HttpClient>> clients;
  for (int i = 0; i < concurrency; ++i) clients.push_back(std::make_unique<bench::HttpClient>());
  const std::string url = srv.base_url() + "/inference/v1/completions";
  const std::vector<std::string> headers = {"Authorization: Bearer " + srv.api_key(),
                                            "Content-Type: application/json"};
  std::mutex error_mu;
  return bench::run_closed_loop(
      concurrency, seconds,
      [&](int client, long i) -> long {
        const auto body = completion_body(model_name, max_tokens, request_seed(client, i)).dump();
        const auto r = clients[client]->request("POST", url, headers, body);
        if (r.status == 200) return json::parse(r.body).at("usage").at("completion_tokens");
        std::lock_guard lk(error_mu);
        if (error->empty()) *error = "HTTP " + std::to_string(r.status) + " " + r.error + r.body;
        return -1;
      },
      [&] { return bench::process_cpu_seconds(srv.pid()); });
}

std::string random_key() {
  std::random_device rd;
  char buf[33];
  for (int i = 0; i < 32; ++i) buf[i] = "0123456789abcdef"[rd() % 16];
  buf[32] = 0;
  return std::string("bench-") + buf;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_serve: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    } else if (a == "--flare") {
      opt.flare_exe = value();
    } else if (a == "--seconds") {
      opt.seconds = std::stod(value());
    } else if (a == "--max-tokens") {
      opt.max_tokens = std::stoi(value());
    } else if (a == "--wrk-seconds") {
      opt.wrk_seconds = std::stoi(value());
    } else if (a == "--in-process-only") {
      opt.in_process_only = true;
    } else {
      std::fprintf(stderr, "bench_serve: unknown option '%s'\n", a.c_str());
      usage(stderr);
      return 2;
    }
  }

  // The in-process engine (same weights, same workload, no HTTP) and the server
  // run side by side; each level measures one right after the other, so a
  // change in the machine's load between levels affects both alike.
  const model::Config cfg = *model::builtin("tiny-gpt");
  engine::Engine local(0);
  local.set_model(std::make_shared<const model::Model>(cfg, model::init_weights(cfg)), "base");

  std::string http_note;
  std::unique_ptr<bench::FlareServer> srv;
  std::string name;
  if (opt.in_process_only) {
    http_note = "HTTP part skipped (--in-process-only)";
  } else if (access(opt.flare_exe.c_str(), X_OK) != 0) {
    http_note = "HTTP part skipped: no executable at " + opt.flare_exe + " (build target flare)";
  } else {
    try {
      srv = std::make_unique<bench::FlareServer>(opt.flare_exe, random_key());
      name = srv->create_deployment("bench-serve", "accounts/local/models/tiny-gpt");
    } catch (const std::exception& ex) {
      http_note = std::string("HTTP part failed: ") + ex.what();
      srv.reset();
    }
  }

  std::vector<Row> rows;
  std::string error;
  for (int c : kLevels) {
    Row row{"completion tokens/s (max_tokens " + std::to_string(opt.max_tokens) + ")", c,
            std::nullopt, engine_load(local, c, opt.seconds, opt.max_tokens), false};
    if (srv) row.http = http_load(*srv, name, c, opt.seconds, opt.max_tokens, &error);
    rows.push_back(row);
  }
  Row one{"1-token completions, requests/s", kWrkConnections, std::nullopt,
          engine_load(local, kWrkConnections, opt.wrk_seconds, 1), true};
  if (srv) {
    try {
      const auto w = bench::run_wrk(srv->base_url() + "/inference/v1/completions", srv->api_key(),
                                    completion_body(name, 1, std::nullopt).dump(), kWrkConnections,
                                    2, opt.wrk_seconds, srv->pid());
      bench::LoadResult as_load;
      as_load.requests = w.requests - w.non_2xx;
      as_load.failures = w.non_2xx + w.socket_errors;
      as_load.seconds = w.requests_per_second > 0 ? w.requests / w.requests_per_second : 0;
      as_load.cpu_seconds = w.cpu_seconds * (as_load.seconds / w.seconds);
      as_load.machine_seconds = w.machine_seconds * (as_load.seconds / w.seconds);
      one.http = as_load;
    } catch (const std::exception& ex) {
      http_note = std::string("wrk failed: ") + ex.what();
    }
  }
  rows.push_back(one);
  if (!error.empty()) http_note = "first failed request: " + error;

  std::printf(
      "\n## bench/serve — tiny-gpt, %u hardware threads, prompt %zu tokens, temperature 1\n\n",
      std::thread::hardware_concurrency(), std::strlen(kPrompt));
  std::printf(
      "| workload | concurrency | flare serve (HTTP) | engine in-process | HTTP / in-process | "
      "server cores busy | machine cores busy (HTTP) | engine cores busy | HTTP / in-process per "
      "CPU-second | failed (HTTP) |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const Row& r : rows) {
    auto rate = [&](const bench::LoadResult& l) {
      return r.requests_per_second ? l.requests_per_second() : l.tokens_per_second();
    };
    const double local = rate(r.local);
    std::string http = "n/a", ratio = "n/a", server_cores = "n/a", machine_cores = "n/a",
                failed = "n/a", per_cpu = "n/a";
    if (r.http) {
      http = fmt(rate(*r.http));
      ratio = local > 0 ? fmt(rate(*r.http) / local, "%.2fx") : "n/a";
      server_cores = fmt(r.http->cores_busy(), "%.2f");
      machine_cores = fmt(r.http->machine_cores_busy(), "%.2f");
      failed = std::to_string(r.http->failures);
      // Work per CPU-second does not depend on how much CPU a shared machine lent us.
      const double http_eff = r.http->cores_busy() > 0 ? rate(*r.http) / r.http->cores_busy() : 0;
      const double local_eff = r.local.cores_busy() > 0 ? local / r.local.cores_busy() : 0;
      if (local_eff > 0 && http_eff > 0) per_cpu = fmt(http_eff / local_eff, "%.2fx");
    }
    std::printf("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.workload.c_str(),
                r.concurrency, http.c_str(), fmt(local).c_str(), ratio.c_str(),
                server_cores.c_str(), machine_cores.c_str(),
                fmt(r.local.cores_busy(), "%.2f").c_str(), per_cpu.c_str(), failed.c_str());
  }
  std::printf(
      "\n%d s per level (wrk: %d s, %d connections, 2 threads; in-process: %d closed-loop "
      "clients).\n",
      int(opt.seconds), opt.wrk_seconds, kWrkConnections, kWrkConnections);
  if (!http_note.empty()) std::printf("%s\n", http_note.c_str());
  return 0;
}
