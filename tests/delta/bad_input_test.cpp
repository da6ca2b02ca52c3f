// Bad deltas: every one gives a clear error and no output file.
#include <doctest/doctest.h>
#include <zlib.h>

#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>

#include "delta/codec.hpp"
#include "helpers.hpp"
#include "runtime/error.hpp"

using namespace flare::delta;
using flare::delta::testing::perturb;
using flare::delta::testing::random_tensor;
using flare::delta::testing::views;

namespace {

struct Fixture {
  std::vector<Tensor> base, next;
  std::vector<std::byte> delta;
  Fixture() {
    Tensor w = random_tensor("w", DType::BF16, {40, 50}, 1);
    Tensor f = random_tensor("f", DType::F32, {300}, 2);
    base = {w, f};
    // w's chunks are sparse, f's classed (all but every 32nd element moved by a few units).
    Tensor f2 = f;
    for (size_t i = 0; i < 300; ++i) {
      uint32_t v;
      std::memcpy(&v, &f2.data[4 * i], 4);
      v += i % 32 ? 1 + i % 5 : 0;
      std::memcpy(&f2.data[4 * i], &v, 4);
    }
    next = {perturb(w, 0.03, 3), f2, random_tensor("new", DType::I8, {20}, 5)};
    EncodeOptions o;
    o.chunk_elements = 512;
    delta = encode(views(base), views(next), {{"step", "2"}}, o);
  }
};

uint64_t le(const std::vector<std::byte>& b, size_t at, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | std::to_integer<uint64_t>(b[at + i]);
  return v;
}
void put(std::vector<std::byte>& b, size_t at, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) b[at + i] = static_cast<std::byte>((v >> (8 * i)) & 0xff);
}

// Rewrites the JSON header with `edit` and fixes the lengths and checksums, so
// only the lie in the header itself is left to catch.
std::vector<std::byte> with_header(const std::vector<std::byte>& delta,
                                   const std::function<void(nlohmann::json&)>& edit) {
  uint64_t hlen = le(delta, 16, 8);
  std::string text(reinterpret_cast<const char*>(delta.data() + 40), hlen);
  nlohmann::json j = nlohmann::json::parse(text);
  edit(j);
  std::string t2 = j.dump();
  std::vector<std::byte> out(delta.begin(), delta.begin() + 40);
  out.resize(40 + t2.size());
  std::memcpy(out.data() + 40, t2.data(), t2.size());
  out.insert(out.end(), delta.begin() + 40 + static_cast<long>(hlen), delta.end());
  put(out, 16, t2.size(), 8);
  put(out, 12,
      ::adler32(1, reinterpret_cast<const Bytef*>(t2.data()), static_cast<uInt>(t2.size())), 4);
  return out;
}

std::string apply_error(const Fixture& fx, const std::vector<std::byte>& delta) {
  try {
    flare::delta::apply(views(fx.base), delta);
  } catch (const flare::Error& e) {
    return e.code + ": " + e.what();
  }
  return "accepted";
}

}  // namespace

TEST_CASE("the fixture delta applies") {
  Fixture fx;
  CHECK_NOTHROW(flare::delta::apply(views(fx.base), fx.delta));
  const DeltaInfo info = inspect(fx.delta);
  CHECK(info.tensors[0].name == "f");
  CHECK(info.tensors[0].encoding == "classed");
  CHECK(info.tensors[2].name == "w");
  CHECK(info.tensors[2].encoding == "sparse");
}

TEST_CASE("an empty delta and every truncation of a delta are refused") {
  Fixture fx;
  CHECK(apply_error(fx, {}).find("invalid_delta: delta: empty file") == 0);
  for (size_t n = 1; n < fx.delta.size(); ++n) {
    std::vector<std::byte> cut(fx.delta.begin(), fx.delta.begin() + static_cast<long>(n));
    std::string e = apply_error(fx, cut);
    INFO("length " << n << ": " << e);
    REQUIRE(e.rfind("invalid_delta: delta: ", 0) == 0);
  }
}

TEST_CASE("every single flipped byte is detected") {
  Fixture fx;
  for (size_t i = 0; i < fx.delta.size(); ++i) {
    for (uint8_t flip : {uint8_t{0x01}, uint8_t{0x80}}) {
      std::vector<std::byte> bad = fx.delta;
      bad[i] ^= std::byte{flip};
      std::string e = apply_error(fx, bad);
      INFO("byte " << i << " ^ " << int(flip) << ": " << e);
      REQUIRE(e.rfind("invalid_delta: delta: ", 0) == 0);
    }
  }
}

TEST_CASE("trailing bytes after the payload are refused") {
  Fixture fx;
  auto bad = fx.delta;
  bad.push_back(std::byte{0});
  CHECK(apply_error(fx, bad).find("truncated or trailing data") != std::string::npos);
}

TEST_CASE("a header that lies is refused with the field named") {
  Fixture fx;
  auto err = [&](const std::function<void(nlohmann::json&)>& edit) {
    return apply_error(fx, with_header(fx.delta, edit));
  };
  CHECK(err([](nlohmann::json&) {}) == "accepted");  // the rewriting itself is faithful
  auto tensor = [](nlohmann::json& j, const std::string& name) -> nlohmann::json& {
    for (auto& t : j["tensors"])
      if (t["name"] == name) return t;
    throw std::runtime_error("no " + name);
  };
  CHECK(err([&](nlohmann::json& j) {
          tensor(j, "w")["chunks"][1][1] = 3;
        }).find("tensor 'w' chunk 1 payload offset 3") != std::string::npos);
  CHECK(err([&](nlohmann::json& j) {
          tensor(j, "w")["chunks"][0][2] = 1u << 30;
        }).find("tensor 'w' chunk 0 payload") != std::string::npos);
  CHECK(err([&](nlohmann::json& j) {
          tensor(j, "w")["shape"] = {1152921504606846976ull};
          tensor(j, "w")["base_shape"] = {1152921504606846976ull};
        }).find("tensor 'w' has 4 chunks but its 1152921504606846976 elements need") !=
        std::string::npos);
  CHECK(err([&](nlohmann::json& j) {
          tensor(j, "new")["shape"] = {4294967296ull, 4294967296ull};
        }).find("tensor 'new'.shape [4294967296,4294967296] has more than 2^62 elements") !=
        std::string::npos);
  CHECK(err([&](nlohmann::json& j) {
          tensor(j, "w")["dtype"] = "F64";
        }).find("tensor 'w': change 'modified' disagrees") != std::string::npos);
  CHECK(err([&](nlohmann::json& j) {
          tensor(j, "w")["chunks"][0][0] = 9;
        }).find("tensor 'w' chunk 0 encoding is 9") != std::string::npos);
  CHECK(err([&](nlohmann::json& j) {
          tensor(j, "new")["chunks"][0][0] = 1;
        }).find("tensor 'new' chunk 0 encoding 'sparse' needs a base chunk") != std::string::npos);
  CHECK(err([&](nlohmann::json& j) {
          tensor(j, "w")["adler32"] = 5;
        }).find("tensor 'w'.adler32 does not match") != std::string::npos);
  CHECK(err([&](nlohmann::json& j) {
          j["chunk_elements"] = 0;
        }).find("header.chunk_elements is 0") != std::string::npos);
  CHECK(err([&](nlohmann::json& j) {
          j["chunk_elements"] = 1ull << 40;
        }).find("header.chunk_elements is 1099511627776") != std::string::npos);
  CHECK(err([&](nlohmann::json& j) {
          j["format"] = "arc_v2";
        }).find("header.format is not flare-delta-v1") != std::string::npos);
  CHECK(err([&](nlohmann::json& j) {
          j["base"]["digest"] = 1;
        }).find("header.base.digest does not match") != std::string::npos);
  CHECK(err([&](nlohmann::json& j) { j.erase("tensors"); }).find("field 'tensors' is missing") !=
        std::string::npos);
  // The chunk's change count is checked against what its payload actually changes.
  CHECK(err([&](nlohmann::json& j) {
          auto& c = tensor(j, "w")["chunks"][0];
          c[5] = c[5].get<uint64_t>() + 1;
        }).find("tensor 'w' chunk 0 changes") != std::string::npos);
}

TEST_CASE("apply_files writes nothing when the delta or the base is bad") {
  Fixture fx;
  testing::ScratchDir dir;
  write_safetensors(dir / "base.safetensors", views(fx.base));
  auto bad = fx.delta;
  bad[bad.size() - 3] ^= std::byte{0x10};
  testing::write_bytes(dir / "bad.delta", bad);
  testing::write_bytes(dir / "good.delta", fx.delta);
  CHECK_THROWS_WITH_AS(
      apply_files(dir / "base.safetensors", dir / "bad.delta", dir / "out.safetensors"),
      doctest::Contains("payload checksum mismatch"), flare::Error);
  std::vector<Tensor> other = fx.base;
  other[1].data[7] ^= std::byte{4};
  write_safetensors(dir / "other.safetensors", views(other));
  CHECK_THROWS_WITH_AS(
      apply_files(dir / "other.safetensors", dir / "good.delta", dir / "out.safetensors"),
      doctest::Contains("tensor 'f' chunk 0: base Adler-32"), flare::Error);
  CHECK_THROWS_WITH_AS(
      apply_files(dir / "base.safetensors", dir / "base.safetensors", dir / "out.safetensors"),
      doctest::Contains("not a flare-delta file"), flare::Error);
  CHECK(dir.file_count() == 4);  // base, bad, good, other: no output, no temporary
}
