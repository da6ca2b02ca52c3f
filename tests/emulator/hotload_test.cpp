// Base and delta hotload from the bucket: verification, atomic swap, errors, restart.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "delta/codec.hpp"
#include "emulator/server/checkpoint.hpp"
#include "fixture.hpp"

using flare::test::http;
using flare::test::Reply;
using flare::test::Server;
namespace fe = flare::emulator;
namespace fm = flare::model;

namespace {

const std::vector<int> kProbe = {fm::kBos, 't', 'h', 'e', ' ', 'c', 'a', 't', ' ', 's', 'a', 't'};

fm::Weights weights_with_seed(uint64_t seed) {
  fm::Config cfg = *fm::builtin("tiny-gpt");
  cfg.seed = seed;
  return fm::init_weights(cfg);
}

// A small update of a few elements, like one optimizer step.
fm::Weights nudged(fm::Weights w, float scale) {
  for (auto& t : w) {
    for (size_t i = 0; i < t.data.size(); i += 97) t.data[i] += scale;
  }
  fm::round_to_bf16(w);
  return w;
}

void put_base(const std::string& bucket, const std::string& name, const fm::Weights& w) {
  std::filesystem::create_directories(bucket + "/" + name);
  fe::write_checkpoint(bucket + "/" + name + "/model.safetensors", fe::to_checkpoint(w));
}

void put_delta(const std::string& bucket, const std::string& name, const fm::Weights& base,
               const fm::Weights& next, const std::string& base_name) {
  std::filesystem::create_directories(bucket + "/" + name);
  auto b = fe::to_checkpoint(base), n = fe::to_checkpoint(next);
  flare::delta::EncodeOptions opts;
  opts.base_identity = base_name;
  auto bytes = flare::delta::encode(fe::views(b), fe::views(n), {}, opts);
  std::ofstream(bucket + "/" + name + "/model.delta", std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
}

// The logprobs the tiny model gives kProbe under `w`, computed here directly.
std::vector<double> local_logprobs(const fm::Weights& w) {
  fm::Model m(*fm::builtin("tiny-gpt"), w);
  auto cache = m.new_cache();
  std::vector<float> logits(kProbe.size() * fm::kVocab);
  m.prefill(*cache, kProbe, logits.data(), nullptr);
  std::vector<double> out;
  for (size_t t = 0; t + 1 < kProbe.size(); ++t) {
    const float* row = logits.data() + t * fm::kVocab;
    double mx = row[0];
    for (int v = 1; v < fm::kVocab; ++v) mx = std::max<double>(mx, row[v]);
    double sum = 0;
    for (int v = 0; v < fm::kVocab; ++v) sum += std::exp(row[v] - mx);
    out.push_back(row[kProbe[t + 1]] - mx - std::log(sum));
  }
  return out;
}

void check_close(const std::vector<double>& a, const std::vector<double>& b, double tol) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) CHECK(std::abs(a[i] - b[i]) <= tol);
}

nlohmann::json delta_meta(const std::string& previous,
                          const std::string& format = std::string(flare::delta::kFormatName)) {
  return {{"previous_snapshot_identity", previous},
          {"compression_format", format},
          {"checksum_format", "alder32"}};
}

// Puts base snapshot `name` of `w` in deployment `id`'s bucket and waits until it serves.
void serve_base(Server& s, const std::string& id, const std::string& name, const fm::Weights& w) {
  put_base(s.bucket_dir(id), name, w);
  REQUIRE(s.hotload(id, {{"identity", name}}).status == 200);
  REQUIRE(s.wait_hotload(id, name)["current_snapshot_identity"] == name);
}

}  // namespace

TEST_CASE("base then delta hotload serve exactly the bucket's weights") {
  Server s;
  s.create_ready("hl", {{"minReplicaCount", 1}});
  std::string bucket = s.bucket_dir("hl");
  auto initial = s.served_logprobs("hl", kProbe);

  auto w1 = weights_with_seed(7);
  put_base(bucket, "snap-1", w1);
  Reply r = s.hotload("hl", {{"identity", "snap-1"}, {"reset_prompt_cache", true}});
  REQUIRE_MESSAGE(r.status == 200, r.body);
  auto rep = s.wait_hotload("hl", "snap-1");
  REQUIRE(rep["current_snapshot_identity"] == "snap-1");
  CHECK(rep["readiness"] == true);
  auto served1 = s.served_logprobs("hl", kProbe);
  check_close(served1, local_logprobs(w1), 1e-5);
  CHECK(std::abs(served1[0] - initial[0]) > 1e-6);
  Reply c =
      s.complete({{"model", "accounts/local/deployments/hl"}, {"prompt", "a"}, {"max_tokens", 1}});
  CHECK(c.json()["model"] == "accounts/local/models/tiny-gpt@snap-1");
  CHECK(c.header("fireworks-snapshot-identity") == "snap-1");

  auto w2 = nudged(w1, 0.05f);
  put_delta(bucket, "snap-2", w1, w2, "snap-1");
  auto t0 = std::chrono::steady_clock::now();
  r = s.hotload("hl",
                {{"identity", "snap-2"}, {"incremental_snapshot_metadata", delta_meta("snap-1")}});
  REQUIRE_MESSAGE(r.status == 200, r.body);
  rep = s.wait_hotload("hl", "snap-2");
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("delta hotload of tiny-gpt, request to ready: " << ms << " ms");
  REQUIRE(rep["current_snapshot_identity"] == "snap-2");
  CHECK(rep["base_snapshot_identity"] == "snap-1");
  check_close(s.served_logprobs("hl", kProbe), local_logprobs(w2), 1e-5);

  // The next delta chains on the snapshot served now (the SDK's WeightSyncer pins
  // previous_snapshot_identity to the snapshot it hotloaded last); one against the older
  // base is refused, naming both.
  auto w3 = nudged(w2, -0.03f);
  put_delta(bucket, "stale-3", w1, w3, "snap-1");
  Reply stale = s.hotload(
      "hl", {{"identity", "stale-3"}, {"incremental_snapshot_metadata", delta_meta("snap-1")}});
  CHECK(stale.status == 400);
  std::string why = stale.json()["error"]["message"];
  CHECK(why.find("'snap-1'") != std::string::npos);
  CHECK(why.find("'snap-2'") != std::string::npos);
  CHECK(s.hotload_status("hl").json()["replicas"][0]["current_snapshot_identity"] == "snap-2");
  put_delta(bucket, "snap-3", w2, w3, "snap-2");
  REQUIRE(s.hotload("hl", {{"identity", "snap-3"},
                           {"incremental_snapshot_metadata", delta_meta("snap-2")}})
              .status == 200);
  REQUIRE(s.wait_hotload("hl", "snap-3")["current_snapshot_identity"] == "snap-3");
  auto served3 = s.served_logprobs("hl", kProbe);
  check_close(served3, local_logprobs(w3), 1e-5);
  // The same request again (a retry whose first answer was lost) succeeds: the replica
  // already serves snap-3, so nothing is loaded a second time.
  Reply again = s.hotload(
      "hl", {{"identity", "snap-3"}, {"incremental_snapshot_metadata", delta_meta("snap-2")}});
  CHECK_MESSAGE(again.status == 200, again.body);
  CHECK(s.hotload_status("hl").json()["replicas"][0]["current_snapshot_identity"] == "snap-3");
  CHECK(s.served_logprobs("hl", kProbe) == served3);

  // The restart serves the same snapshot with the same logprobs.
  s.restart();
  Reply st = s.hotload_status("hl");
  REQUIRE(st.json()["replicas"].size() == 1);
  CHECK(st.json()["replicas"][0]["current_snapshot_identity"] == "snap-3");
  CHECK(s.served_logprobs("hl", kProbe) == served3);
}

TEST_CASE(
    "a delta against the wrong base and a corrupted delta are rejected; serving is unchanged") {
  Server s;
  s.create_ready("hl", {{"minReplicaCount", 1}});
  std::string bucket = s.bucket_dir("hl");
  auto w1 = weights_with_seed(11);
  serve_base(s, "hl", "base-a", w1);
  nlohmann::json probe = {{"model", "accounts/local/deployments/hl"},
                          {"prompt", "seed me"},
                          {"max_tokens", 8},
                          {"seed", 5},
                          {"logprobs", true},
                          {"raw_output", true}};
  auto before = s.complete(probe).json()["choices"];
  auto before_lp = s.served_logprobs("hl", kProbe);

  // Made against other weights but claiming base-a: the base digest does not match.
  auto other = weights_with_seed(12);
  put_delta(bucket, "wrong-base", other, nudged(other, 0.1f), "base-a");
  REQUIRE(s.hotload("hl", {{"identity", "wrong-base"},
                           {"incremental_snapshot_metadata", delta_meta("base-a")}})
              .status == 200);
  auto rep = s.wait_hotload("hl", "wrong-base");
  CHECK(rep["loading_state"]["stage"] == "error");
  CHECK(rep["current_snapshot_identity"] == "base-a");
  CHECK(!rep["loading_state"]["message"].get<std::string>().empty());

  // Names a previous snapshot the replica does not serve.
  put_delta(bucket, "not-served", w1, nudged(w1, 0.1f), "base-a");
  Reply r = s.hotload("hl", {{"identity", "not-served"},
                             {"incremental_snapshot_metadata", delta_meta("base-zzz")}});
  CHECK(r.status == 400);
  CHECK(r.json()["error"]["message"].get<std::string>().find("base-zzz") != std::string::npos);
  rep = s.hotload_status("hl").json()["replicas"][0];
  CHECK(rep["loading_state"]["stage"] == "error");
  CHECK(rep["loading_state"]["target_snapshot_identity"] == "not-served");

  // A flipped byte in the payload.
  put_delta(bucket, "corrupt", w1, nudged(w1, 0.1f), "base-a");
  std::string path = bucket + "/corrupt/model.delta";
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(0, std::ios::end);
  auto size = static_cast<long>(f.tellg());
  f.seekp(size * 3 / 4);
  char b = 0;
  f.seekg(size * 3 / 4);
  f.read(&b, 1);
  b ^= 0x5a;
  f.seekp(size * 3 / 4);
  f.write(&b, 1);
  f.close();
  REQUIRE(s.hotload("hl", {{"identity", "corrupt"},
                           {"incremental_snapshot_metadata", delta_meta("base-a")}})
              .status == 200);
  rep = s.wait_hotload("hl", "corrupt");
  CHECK(rep["loading_state"]["stage"] == "error");
  CHECK(rep["current_snapshot_identity"] == "base-a");

  auto after = s.complete(probe).json()["choices"];
  CHECK(after == before);
  CHECK(s.served_logprobs("hl", kProbe) == before_lp);
}

TEST_CASE("the SDK's arc_v2 label is taken for a flare delta in the bucket, and only for one") {
  Server s;
  s.create_ready("hl", {{"minReplicaCount", 1}});
  std::string bucket = s.bucket_dir("hl");
  auto w1 = weights_with_seed(11);
  serve_base(s, "hl", "base-1", w1);
  auto arc = [](const std::string& previous) { return delta_meta(previous, "arc_v2"); };
  // Not a flare delta (here: any other bytes): refused before anything is loaded.
  std::filesystem::create_directories(bucket + "/other-1");
  std::ofstream(bucket + "/other-1/model.delta") << "ARCV2...not flare's layout";
  Reply other =
      s.hotload("hl", {{"identity", "other-1"}, {"incremental_snapshot_metadata", arc("base-1")}});
  CHECK(other.status == 400);
  CHECK(other.json()["error"]["message"].get<std::string>().find("'arc_v2' is not supported") !=
        std::string::npos);
  CHECK(s.hotload_status("hl").json()["replicas"][0]["current_snapshot_identity"] == "base-1");
  Reply missing = s.hotload(
      "hl", {{"identity", "nothing-1"}, {"incremental_snapshot_metadata", arc("base-1")}});
  CHECK(missing.status == 400);
  CHECK(missing.json()["error"]["message"].get<std::string>().find("arc_v2") == std::string::npos);
  // A flare delta labelled arc_v2, as the SDK sends it: loaded and verified as usual.
  auto w2 = nudged(w1, 0.05f);
  put_delta(bucket, "step-1", w1, w2, "base-1");
  Reply ok =
      s.hotload("hl", {{"identity", "step-1"}, {"incremental_snapshot_metadata", arc("base-1")}});
  REQUIRE_MESSAGE(ok.status == 200, ok.body);
  CHECK(s.wait_hotload("hl", "step-1")["current_snapshot_identity"] == "step-1");
  check_close(s.served_logprobs("hl", kProbe), local_logprobs(w2), 1e-5);
}

TEST_CASE("hotload request errors") {
  Server s;
  s.create_ready("hl", {{"minReplicaCount", 1}});
  std::string bucket = s.bucket_dir("hl");
  put_base(bucket, "b", weights_with_seed(3));

  Reply fmt = s.hotload("hl", {{"identity", "b"},
                               {"incremental_snapshot_metadata",
                                {{"previous_snapshot_identity", "accounts/local/models/tiny-gpt"},
                                 {"compression_format", "xor_one_to_one_zstd"}}}});
  CHECK(fmt.status == 400);
  CHECK(fmt.json()["error"]["message"].get<std::string>().find(
            std::string(flare::delta::kFormatName)) != std::string::npos);
  auto meta = delta_meta("accounts/local/models/tiny-gpt");
  meta["checksum_format"] = "crc32";
  CHECK(s.hotload("hl", {{"identity", "b"}, {"incremental_snapshot_metadata", meta}}).status ==
        400);
  CHECK(s.hotload("hl", {{"identity", "missing"}}).status == 400);
  CHECK(s.hotload("hl", {{"identity", "../x"}}).status == 400);
  CHECK(s.hotload("hl", {{"identity", "b"}, {"bogus", 1}}).status == 400);
  CHECK(s.hotload("hl", nlohmann::json::object()).status == 400);
  CHECK(s.hotload("nope", {{"identity", "b"}}).status == 404);
  // Bearer auth; the deployment header is required.
  CHECK(http("POST", s.url("/hot_load/v1/models/hot_load"), R"({"identity":"b"})",
             {s.key_header(), "fireworks-deployment: accounts/local/deployments/hl"})
            .status == 401);
  CHECK(http("POST", s.url("/hot_load/v1/models/hot_load"), R"({"identity":"b"})",
             {s.bearer_header()})
            .status == 400);
  // A delta straight on the initial weights of the base model.
  std::string init_path = s.state_dir + "/models/tiny-gpt.safetensors";
  REQUIRE(std::filesystem::exists(init_path));
  auto w0 = fm::init_weights(*fm::builtin("tiny-gpt"));
  put_delta(bucket, "d0", w0, nudged(w0, 0.2f), "accounts/local/models/tiny-gpt");
  REQUIRE(s.hotload("hl", {{"identity", "d0"},
                           {"incremental_snapshot_metadata",
                            delta_meta("accounts/local/models/tiny-gpt")}})
              .status == 200);
  CHECK(s.wait_hotload("hl", "d0")["current_snapshot_identity"] == "d0");
}
