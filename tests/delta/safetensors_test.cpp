#include "delta/safetensors.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "helpers.hpp"
#include "runtime/error.hpp"

using namespace flare::delta;
using flare::delta::testing::random_tensor;

namespace {

// A file from a literal header and `data_bytes` zero bytes of data.
std::vector<std::byte> file_with_header(const std::string& json, size_t data_bytes,
                                        std::optional<uint64_t> claimed_len = {}) {
  uint64_t n = claimed_len.value_or(json.size());
  std::vector<std::byte> out(8 + json.size() + data_bytes);
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::byte>((n >> (8 * i)) & 0xff);
  std::memcpy(out.data() + 8, json.data(), json.size());
  return out;
}

std::string parse_error(const std::vector<std::byte>& bytes) {
  try {
    SafetensorsFile::view_bytes(bytes);
  } catch (const flare::Error& e) {
    CHECK(e.code == "invalid_safetensors");
    return e.what();
  }
  FAIL("parse accepted a malformed file");
  return "";
}

}  // namespace

TEST_CASE("every dtype round-trips through serialize and parse, bit for bit") {
  std::vector<Tensor> ts;
  const DType all[] = {DType::F64,     DType::F32,     DType::F16, DType::BF16,
                       DType::F8_E4M3, DType::F8_E5M2, DType::I64, DType::I32,
                       DType::I16,     DType::I8,      DType::U8,  DType::BOOL,
                       DType::U64,     DType::U32,     DType::U16, DType::F8_E8M0};
  uint64_t seed = 1;
  for (DType d : all)
    ts.push_back(random_tensor("t_" + std::string(dtype_name(d)), d, {3, 5}, seed++));
  ts.push_back(random_tensor("scalar", DType::F32, {}, 99));
  ts.push_back({"empty", DType::BF16, {0, 4}, {}});
  Metadata meta = {{"format", "pt"}, {"step", "12"}};
  auto bytes = serialize_safetensors(testing::views(ts), meta);
  auto f = SafetensorsFile::view_bytes(bytes);
  CHECK(f.metadata() == meta);
  CHECK(f.tensors().size() == ts.size());
  for (const auto& t : ts) {
    const TensorView& v = f.at(t.name);
    CHECK(v.dtype == t.dtype);
    CHECK(v.shape == t.shape);
    CHECK(std::equal(v.data.begin(), v.data.end(), t.data.begin(), t.data.end()));
  }
}

TEST_CASE("the written layout is the standard one: LE length, JSON padded to 8, aligned data") {
  std::vector<Tensor> ts = {random_tensor("b", DType::U8, {3}, 1),
                            random_tensor("a", DType::F64, {2}, 2)};
  auto bytes = serialize_safetensors(testing::views(ts), {{"k", "v"}});
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | std::to_integer<uint64_t>(bytes[i]);
  CHECK(n % 8 == 0);
  CHECK(bytes.size() == 8 + n + 3 + 16);
  std::string json(reinterpret_cast<const char*>(bytes.data() + 8), n);
  CHECK(json.rfind("{\"__metadata__\":{\"k\":\"v\"}", 0) == 0);
  auto j = nlohmann::json::parse(json);
  // The 8-byte dtype comes first so every tensor stays aligned to its element size.
  CHECK(j["a"]["data_offsets"] == nlohmann::json::array({0, 16}));
  CHECK(j["b"]["data_offsets"] == nlohmann::json::array({16, 19}));
  CHECK(j["a"]["dtype"] == "F64");
  CHECK(j["b"]["shape"] == nlohmann::json::array({3}));
}

TEST_CASE("write_safetensors publishes by rename and the file maps back") {
  testing::ScratchDir dir;
  std::vector<Tensor> ts = {random_tensor("w", DType::BF16, {64, 3}, 5)};
  write_safetensors(dir / "ck.safetensors", testing::views(ts), {{"a", "b"}});
  CHECK(dir.file_count() == 1);
  auto f = SafetensorsFile::open(dir / "ck.safetensors");
  CHECK(f.at("w").shape == Shape{64, 3});
  CHECK(std::equal(f.at("w").data.begin(), f.at("w").data.end(), ts[0].data.begin()));
}

TEST_CASE("a failed write leaves neither the target nor a temporary file") {
  testing::ScratchDir dir;
  Tensor bad{"w", DType::F32, {4}, std::vector<std::byte>(15)};  // 15 bytes for 16
  CHECK_THROWS_WITH_AS(
      write_safetensors(dir / "x.safetensors", std::vector<TensorView>{bad.view()}),
      doctest::Contains("'w' has 15 bytes but its shape needs 16"), flare::Error);
  CHECK(dir.file_count() == 0);
}

TEST_CASE("malformed files are refused with the tensor and field named") {
  SUBCASE("empty") {
    CHECK(parse_error({}).find("empty file") != std::string::npos);
  }
  SUBCASE("shorter than the length prefix") {
    CHECK(parse_error(std::vector<std::byte>(5)).find("shorter than the 8-byte") !=
          std::string::npos);
  }
  SUBCASE("header length past the end") {
    CHECK(parse_error(file_with_header("{}", 0, 500)).find("runs past the end") !=
          std::string::npos);
  }
  SUBCASE("header length above the cap") {
    CHECK(parse_error(file_with_header("{}", 0, uint64_t{1} << 40)).find("exceeds the limit") !=
          std::string::npos);
  }
  SUBCASE("not JSON") {
    CHECK(parse_error(file_with_header("{nope", 0)).find("not valid JSON") != std::string::npos);
  }
  SUBCASE("duplicate tensor") {
    auto e = parse_error(file_with_header(
        R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
        2));
    CHECK(e.find("tensor 'a' appears twice") != std::string::npos);
  }
  SUBCASE("unknown dtype") {
    auto e = parse_error(
        file_with_header(R"({"a":{"dtype":"F7","shape":[1],"data_offsets":[0,1]}})", 1));
    CHECK(e.find("tensor 'a': unknown dtype 'F7'") != std::string::npos);
  }
  SUBCASE("size disagrees with shape") {
    auto e = parse_error(
        file_with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4));
    CHECK(e.find("tensor 'a': data_offsets span 4 bytes but shape [2] of F32 needs 8") !=
          std::string::npos);
  }
  SUBCASE("offsets beyond the data") {
    auto e = parse_error(
        file_with_header(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})", 4));
    CHECK(e.find("tensor 'a': data_offsets end 8 is past the 4 bytes") != std::string::npos);
  }
  SUBCASE("overlapping tensors") {
    auto e = parse_error(file_with_header(
        R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
        6));
    CHECK(e.find("tensor 'b': data_offsets begin 2 overlaps") != std::string::npos);
  }
  SUBCASE("begin after end") {
    auto e = parse_error(
        file_with_header(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[3,1]}})", 3));
    CHECK(e.find("tensor 'a': data_offsets begin 3 is after end 1") != std::string::npos);
  }
  SUBCASE("absurd shape") {
    auto e = parse_error(file_with_header(
        R"({"a":{"dtype":"BF16","shape":[1152921504606846976],"data_offsets":[0,2]}})", 2));
    CHECK(e.find("tensor 'a': data_offsets span 2 bytes but shape [1152921504606846976]") !=
          std::string::npos);
  }
  SUBCASE("shape overflowing 2^62") {
    auto e = parse_error(file_with_header(
        R"({"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,1]}})", 1));
    CHECK(e.find("tensor 'a': shape [4294967296,4294967296] has more than 2^62") !=
          std::string::npos);
  }
  SUBCASE("negative dimension") {
    auto e = parse_error(
        file_with_header(R"({"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}})", 1));
    CHECK(e.find("tensor 'a': shape must be a non-negative integer") != std::string::npos);
  }
  SUBCASE("missing data_offsets") {
    auto e = parse_error(file_with_header(R"({"a":{"dtype":"U8","shape":[1]}})", 1));
    CHECK(e.find("tensor 'a': data_offsets must be [begin, end]") != std::string::npos);
  }
  SUBCASE("trailing garbage after the last tensor") {
    auto e = parse_error(
        file_with_header(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", 7));
    CHECK(e.find("5 bytes of trailing data") != std::string::npos);
  }
  SUBCASE("metadata values must be strings") {
    auto e = parse_error(file_with_header(R"({"__metadata__":{"step":3}})", 0));
    CHECK(e.find("__metadata__.step must be a string") != std::string::npos);
  }
}

TEST_CASE("open names the file in its errors") {
  testing::ScratchDir dir;
  testing::write_bytes(dir / "empty.safetensors", {});
  CHECK_THROWS_WITH_AS(SafetensorsFile::open(dir / "empty.safetensors"),
                       doctest::Contains("empty.safetensors: safetensors: empty file"),
                       flare::Error);
  CHECK_THROWS_WITH_AS(SafetensorsFile::open(dir / "missing.safetensors"),
                       doctest::Contains("cannot open"), flare::Error);
}
