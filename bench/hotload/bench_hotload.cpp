// bench_hotload [rounds]: median time from the hotload request to the replica
// serving the snapshot, delta (flare-delta-v1, a small update) against a full
// base load of the same weights, in one run on one emulator.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "delta/codec.hpp"
#include "emulator/server/checkpoint.hpp"
#include "emulator/server/emulator.hpp"
#include "http_client.hpp"

namespace fe = flare::emulator;
namespace fm = flare::model;
using flare::test::http;

namespace {

struct Bench {
  fe::Emulator& emu;
  std::vector<std::string> headers() const {
    return {"Authorization: Bearer " + emu.api_key(),
            "fireworks-deployment: accounts/local/deployments/bench"};
  }
  // Milliseconds from the POST to the status naming `identity` as current.
  double hotload(const nlohmann::json& body) {
    std::string url = emu.base_url() + "/hot_load/v1/models/hot_load";
    auto t0 = std::chrono::steady_clock::now();
    auto r = http("POST", url, body.dump(), headers());
    if (r.status != 200) throw std::runtime_error("hotload failed: " + r.body);
    while (true) {
      auto j = http("GET", url, "", headers()).json();
      auto& rep = j["replicas"][0];
      if (rep["loading_state"]["stage"] == "error") throw std::runtime_error(rep.dump());
      if (rep["current_snapshot_identity"] == body["identity"] &&
          rep["loading_state"]["stage"] == "idle")
        break;
    }
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = argc > 1 ? std::atoi(argv[1]) : 15;
  fe::Options opt;
  opt.provision_delay_s = 0.01;
  fe::Emulator emu(opt);
  emu.start();
  auto r = http("POST", emu.base_url() + "/v1/accounts/local/deployments?deploymentId=bench",
                R"({"baseModel":"accounts/local/models/tiny-gpt","minReplicaCount":1})",
                {"X-Api-Key: " + emu.api_key()});
  if (r.status != 200) {
    std::fprintf(stderr, "create failed: %s\n", r.body.c_str());
    return 1;
  }
  std::string bucket;
  while (true) {
    auto j = http("GET", emu.base_url() + "/v1/accounts/local/deployments/bench", "",
                  {"X-Api-Key: " + emu.api_key()})
                 .json();
    if (j["state"] == "READY") {
      bucket = j["hotLoadBucketUrl"].get<std::string>().substr(7);
      break;
    }
  }
  const fm::Config& cfg = *fm::builtin("tiny-gpt");
  auto base = fm::init_weights(cfg);
  auto base_ckpt = fe::to_checkpoint(base);
  std::filesystem::create_directories(bucket + "/base");
  fe::write_checkpoint(bucket + "/base/model.safetensors", base_ckpt);
  size_t full_bytes = std::filesystem::file_size(bucket + "/base/model.safetensors");

  Bench b{emu};
  std::vector<double> base_ms, delta_ms;
  size_t delta_bytes = 0;
  for (int i = 0; i < rounds; ++i) {
    base_ms.push_back(b.hotload({{"identity", "base"}}));
    // One small optimizer-like step: about 2% of the elements move by one bf16 ulp.
    auto next = base;
    for (auto& t : next) {
      for (size_t k = i; k < t.data.size(); k += 50) t.data[k] *= 1.0f + 1.0f / 128;
    }
    auto next_ckpt = fe::to_checkpoint(next);
    std::string name = "delta-" + std::to_string(i);
    flare::delta::EncodeOptions eo;
    eo.base_identity = "base";
    auto bytes = flare::delta::encode(fe::views(base_ckpt), fe::views(next_ckpt), {}, eo);
    delta_bytes = bytes.size();
    std::filesystem::create_directories(bucket + "/" + name);
    std::ofstream(bucket + "/" + name + "/model.delta", std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
    delta_ms.push_back(b.hotload({{"identity", name},
                                  {"incremental_snapshot_metadata",
                                   {{"previous_snapshot_identity", "base"},
                                    {"compression_format", std::string(flare::delta::kFormatName)},
                                    {"checksum_format", "alder32"}}}}));
  }
  double d = median(delta_ms), f = median(base_ms);
  std::printf(
      "| tiny-gpt hotload, request to ready (median of %d) | ms | bytes read |\n|---|---|---|\n",
      rounds);
  std::printf("| delta (flare-delta-v1) | %.1f | %zu |\n", d, delta_bytes);
  std::printf("| full base checkpoint (baseline) | %.1f | %zu |\n", f, full_bytes);
  std::printf("| delta / base | %.2fx | %.3fx |\n", d / f,
              double(delta_bytes) / double(full_bytes));
  emu.stop();
  return 0;
}
