// Engines serving LoRA addons, from one run over loopback HTTP to an in-process emulator:
// throughput of mixed traffic over 1, 8 and 32 addons against the base model alone at the
// same concurrency; request -> DEPLOYED and undeploy latency; adapter vs snapshot size.
// The fixture (tests/emulator) reports through doctest; its implementation lives here.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "emulator/server/checkpoint.hpp"
#include "fixture.hpp"

namespace fs = std::filesystem;
using namespace flare;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_adapter(const std::string& dir, const std::string& model, int rank, unsigned seed) {
  const model::Config& cfg = *model::builtin(model);
  model::Weights lora = model::init_lora(cfg, {rank, double(2 * rank), seed});
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 0.05f);
  for (auto& t : lora)
    if (t.name.find("lora_B") != std::string::npos)
      for (auto& v : t.data) v = nd(rng);
  emulator::write_peft_adapter(dir, "accounts/local/models/" + model, rank, 2 * rank, lora);
}

void must(const test::Reply& r, const std::string& what) {
  if (r.status != 200) {
    std::fprintf(stderr, "%s: HTTP %ld %s\n", what.c_str(), r.status, r.body.c_str());
    std::exit(1);
  }
}

void import_model(test::Server& s, const std::string& id, const std::string& folder) {
  must(s.control("POST", "/v1/accounts/local/models",
                 {{"modelId", id},
                  {"model",
                   {{"kind", "HF_PEFT_ADDON"},
                    {"peftDetails", {{"baseModel", "accounts/local/models/tiny-gpt"}}}}}}),
       "create model");
  json sizes;
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors"})
    sizes[f] = fs::file_size(folder + "/" + f);
  auto r = s.control("POST", "/v1/accounts/local/models/" + id + ":getUploadEndpoint",
                     {{"filenameToSize", sizes}});
  must(r, "upload endpoint");
  const json urls = r.json()["filenameToSignedUrls"];
  for (auto& [f, url] : urls.items())
    must(test::http("PUT", url.get<std::string>(), slurp(folder + "/" + f), {s.key_header()}),
         "upload");
  must(s.control("POST", "/v1/accounts/local/models/" + id + ":validateUpload", json::object()),
       "validate");
}

// Seconds from the POST until GET reports DEPLOYED; the deployed model's id in *id.
double timed_deploy(test::Server& s, const std::string& model, std::string* id) {
  auto t0 = Clock::now();
  auto r = s.control("POST", "/v1/accounts/local/deployedModels",
                     {{"model", "accounts/local/models/" + model},
                      {"deployment", "accounts/local/deployments/eng"}});
  must(r, "deploy");
  std::string name = r.json()["name"];
  *id = name.substr(name.rfind('/') + 1);
  while (true) {
    auto g = s.control("GET", "/v1/accounts/local/deployedModels/" + *id);
    if (g.status == 200 && g.json()["state"] == "DEPLOYED") return since(t0);
    if (since(t0) > 30) {
      std::fprintf(stderr, "deploy of %s did not finish: %s\n", model.c_str(), g.body.c_str());
      std::exit(1);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
}

double timed_undeploy(test::Server& s, const std::string& id) {
  auto t0 = Clock::now();
  must(s.control("DELETE", "/v1/accounts/local/deployedModels/" + id), "undeploy");
  return since(t0);
}

struct Load {
  double tokens_per_s = 0;
  long requests = 0;
  long failures = 0;
};

// Closed-loop clients for `seconds`; client k sends to models[k % models.size()] in turn.
Load run(test::Server& s, const std::vector<std::string>& models, int concurrency, double seconds,
         int max_tokens) {
  std::atomic<long> tokens{0}, requests{0}, failures{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  auto t0 = Clock::now();
  for (int c = 0; c < concurrency; ++c) {
    threads.emplace_back([&, c] {
      for (long i = c; !stop; i += concurrency) {
        auto r = s.complete({{"model", models[size_t(i) % models.size()]},
                             {"prompt", "The quick brown fox jumps over the lazy dog. "},
                             {"max_tokens", max_tokens},
                             {"temperature", 1.0},
                             {"seed", i}});
        if (r.status != 200) {
          ++failures;
          continue;
        }
        tokens += r.json()["usage"]["completion_tokens"].get<long>();
        ++requests;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  double wall = since(t0);
  return {double(tokens) / wall, requests, failures};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int g_argc;
char** g_argv;

// The fixture's checks need a running doctest test case.
TEST_CASE("bench_engines") {
  int argc = g_argc;
  char** argv = g_argv;
  double seconds = 3;
  int concurrency = 16, max_tokens = 32;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--seconds") seconds = std::stod(argv[i + 1]);
    if (a == "--concurrency") concurrency = std::stoi(argv[i + 1]);
    if (a == "--max-tokens") max_tokens = std::stoi(argv[i + 1]);
  }
  test::Server s(0.05);
  must(s.create_deployment("eng", {{"baseModel", "accounts/local/models/tiny-gpt"},
                                   {"enableAddons", true},
                                   {"minReplicaCount", 1}}),
       "create engine");
  while (s.control("GET", "/v1/accounts/local/deployments/eng").json()["state"] != "READY")
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const int kAddons = 32;
  std::string tmp = test::make_temp_dir();
  for (int i = 0; i < kAddons; ++i) {
    std::string dir = tmp + "/a" + std::to_string(i);
    fs::create_directories(dir);
    write_adapter(dir, "tiny-gpt", 8, 100 + unsigned(i));
    import_model(s, "addon-" + std::to_string(i), dir);
  }

  std::vector<double> deploy_s, undeploy_s;
  std::vector<std::string> ids(kAddons);
  for (int i = 0; i < kAddons; ++i)
    deploy_s.push_back(timed_deploy(s, "addon-" + std::to_string(i), &ids[size_t(i)]));
  for (int i = 0; i < 8; ++i) {  // undeploy and deploy again: more samples of both
    undeploy_s.push_back(timed_undeploy(s, ids[size_t(i)]));
    deploy_s.push_back(timed_deploy(s, "addon-" + std::to_string(i), &ids[size_t(i)]));
  }

  auto addons = [&](int n) {
    std::vector<std::string> m;
    for (int i = 0; i < n; ++i)
      m.push_back("accounts/local/models/addon-" + std::to_string(i) +
                  "#accounts/local/deployments/eng");
    return m;
  };
  std::printf(
      "bench_engines: tiny-gpt engine, %d closed-loop clients, max_tokens %d, %.0f s each\n",
      concurrency, max_tokens, seconds);
  run(s, {"accounts/local/deployments/eng"}, concurrency, 1, max_tokens);  // warm up
  std::printf("%-26s %12s %10s %9s %8s\n", "traffic", "tokens/s", "requests", "failures",
              "vs base");
  for (int round = 0; round < 1; ++round) {
    Load base = run(s, {"accounts/local/deployments/eng"}, concurrency, seconds, max_tokens);
    std::printf("%-26s %12.0f %10ld %9ld %8s\n", "base model alone", base.tokens_per_s,
                base.requests, base.failures, "1.00");
    for (int n : {1, 8, 32}) {
      Load l = run(s, addons(n), concurrency, seconds, max_tokens);
      char label[64];
      std::snprintf(label, sizeof label, "%d adapter%s, mixed", n, n == 1 ? "" : "s");
      std::printf("%-26s %12.0f %10ld %9ld %8.2f\n", label, l.tokens_per_s, l.requests, l.failures,
                  l.tokens_per_s / base.tokens_per_s);
    }
  }
  std::printf("deploy (POST -> DEPLOYED), %zu samples: median %.1f ms, max %.1f ms\n",
              deploy_s.size(), 1e3 * median(deploy_s),
              1e3 * *std::max_element(deploy_s.begin(), deploy_s.end()));
  std::printf("undeploy (DELETE -> 200, unloaded), %zu samples: median %.1f ms, max %.1f ms\n",
              undeploy_s.size(), 1e3 * median(undeploy_s),
              1e3 * *std::max_element(undeploy_s.begin(), undeploy_s.end()));

  // tiny-gpt-m, rank 8: the PEFT folder against a full bf16 snapshot.
  const model::Config& m = *model::builtin("tiny-gpt-m");
  std::string adir = tmp + "/size-adapter";
  fs::create_directories(adir);
  write_adapter(adir, "tiny-gpt-m", 8, 1);
  std::string full = tmp + "/size-full.safetensors";
  emulator::write_checkpoint(full, emulator::to_checkpoint(model::init_weights(m)));
  auto asize = fs::file_size(adir + "/adapter_model.safetensors") +
               fs::file_size(adir + "/adapter_config.json");
  auto fsize = fs::file_size(full);
  std::printf(
      "tiny-gpt-m rank 8: adapter %ju bytes (safetensors + config), full snapshot %ju "
      "bytes, ratio %.3f\n",
      uintmax_t(asize), uintmax_t(fsize), double(asize) / double(fsize));
  fs::remove_all(tmp);
}

int main(int argc, char** argv) {
  g_argc = argc;
  g_argv = argv;
  doctest::Context ctx;
  ctx.setOption("no-version", true);
  ctx.setOption("no-intro", true);
  return ctx.run();
}
