// Integrity of delta hotload: a delta with any one byte flipped is refused with
// the replica's loading stage "error", and the deployment keeps serving the
// previous snapshot bit-identically (the same logprobs, to the last bit).
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>

#include "delta/codec.hpp"
#include "emulator/server/checkpoint.hpp"
#include "fixture.hpp"

using flare::test::Reply;
using flare::test::Server;
namespace fe = flare::emulator;
namespace fm = flare::model;

namespace {

const std::vector<int> kProbe = {fm::kBos, 'f', 'l', 'i', 'p', ' ', 'o', 'n', 'e'};

void write_bytes(const std::string& path, const std::vector<std::byte>& bytes) {
  std::string tmp = path + ".tmp";
  std::ofstream(tmp, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
  std::filesystem::rename(tmp, path);  // the server never sees a half-written file
}

}  // namespace

TEST_CASE("every flipped byte of a delta is refused and the previous snapshot keeps serving") {
  Server s;
  s.create_ready("in", {{"minReplicaCount", 1}});
  const std::string bucket = s.bucket_dir("in");

  fm::Config cfg = *fm::builtin("tiny-gpt");
  cfg.seed = 11;
  fm::Weights base = fm::init_weights(cfg);
  fm::Weights next = base;
  for (auto& t : next) {
    for (size_t i = 0; i < t.data.size(); i += 61) t.data[i] += 0.03f;
  }
  fm::round_to_bf16(next);
  std::filesystem::create_directories(bucket + "/base");
  fe::write_checkpoint(bucket + "/base/model.safetensors", fe::to_checkpoint(base));
  REQUIRE(s.hotload("in", {{"identity", "base"}}).status == 200);
  REQUIRE(s.wait_hotload("in", "base")["current_snapshot_identity"] == "base");
  const std::vector<double> served = s.served_logprobs("in", kProbe);

  auto b = fe::to_checkpoint(base), n = fe::to_checkpoint(next);
  flare::delta::EncodeOptions opts;
  opts.base_identity = "base";
  const std::vector<std::byte> good = flare::delta::encode(fe::views(b), fe::views(n), {}, opts);

  // Every position of a small delta (tiny-gpt's is about 12 KB), else 2000 drawn with a
  // fixed seed.
  std::vector<size_t> positions;
  if (good.size() <= 16384) {
    for (size_t i = 0; i < good.size(); ++i) positions.push_back(i);
  } else {
    std::mt19937_64 rng(20261207);
    std::uniform_int_distribution<size_t> pick(0, good.size() - 1);
    for (int i = 0; i < 2000; ++i) positions.push_back(pick(rng));
  }
  MESSAGE("delta of " << good.size() << " bytes; flipping " << positions.size() << " positions");

  const nlohmann::json meta = {{"previous_snapshot_identity", "base"},
                               {"compression_format", std::string(flare::delta::kFormatName)},
                               {"checksum_format", "alder32"}};
  std::filesystem::create_directories(bucket + "/bad");
  std::mt19937 bits(7);
  size_t refused_at_request = 0, refused_while_loading = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (size_t k = 0; k < positions.size(); ++k) {
    std::vector<std::byte> bad = good;
    // One bit or several: any change of the byte must be caught.
    bad[positions[k]] ^= static_cast<std::byte>(1u + bits() % 255u);
    write_bytes(bucket + "/bad/model.delta", bad);
    Reply r = s.hotload("in", {{"identity", "bad"}, {"incremental_snapshot_metadata", meta}});
    auto rep = s.wait_hotload("in", "bad");
    CAPTURE(positions[k]);
    CHECK(rep["loading_state"]["stage"] == "error");
    CHECK(rep["current_snapshot_identity"] == "base");
    (r.status == 200 ? refused_while_loading : refused_at_request) += 1;
    if (r.status != 200) CHECK(r.status == 400);
    if (k % 100 == 0 || k + 1 == positions.size()) {
      REQUIRE(s.served_logprobs("in", kProbe) == served);  // bit-identical
    }
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE(positions.size() << " corrupted deltas refused (" << refused_at_request
                           << " at the request, " << refused_while_loading << " while loading) in "
                           << secs << " s");

  // The intact delta still loads on the same replica.
  write_bytes(bucket + "/bad/model.delta", good);
  REQUIRE(s.hotload("in", {{"identity", "bad"}, {"incremental_snapshot_metadata", meta}}).status ==
          200);
  CHECK(s.wait_hotload("in", "bad")["current_snapshot_identity"] == "bad");
  CHECK(s.served_logprobs("in", kProbe) != served);
}
