#include "delta/codec.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>

#include "delta/adler32.hpp"
#include "delta/chunk_codec.hpp"
#include "helpers.hpp"
#include "runtime/error.hpp"

using namespace flare::delta;
using flare::delta::testing::perturb;
using flare::delta::testing::random_tensor;
using flare::delta::testing::views;

namespace {

void check_same(const std::vector<Tensor>& got, std::vector<Tensor> want) {
  std::sort(want.begin(), want.end(), [](auto& a, auto& b) { return a.name < b.name; });
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].name == want[i].name);
    CHECK(got[i].dtype == want[i].dtype);
    CHECK(got[i].shape == want[i].shape);
    CHECK((got[i].data == want[i].data));
  }
}

const TensorDeltaInfo& info_of(const DeltaInfo& info, const std::string& name) {
  for (const auto& t : info.tensors)
    if (t.name == name) return t;
  FAIL("no tensor " << name);
  return info.tensors.front();
}

// Gaussian-like bf16 weights and one small step of them, as in training.
std::pair<Tensor, Tensor> bf16_step(size_t n, double lr, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.f, 0.02f);
  Tensor a{"w", DType::BF16, {n}, std::vector<std::byte>(2 * n)}, b = a;
  auto bf16 = [](float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    return static_cast<uint16_t>((x + 0x7fff + ((x >> 16) & 1)) >> 16);
  };
  for (size_t i = 0; i < n; ++i) {
    float w = g(rng);
    float w2 =
        w - static_cast<float>(lr * std::clamp(static_cast<double>(g(rng)) / 0.02, -3.0, 3.0));
    uint16_t x = bf16(w), y = bf16(w2);
    std::memcpy(&a.data[2 * i], &x, 2);
    std::memcpy(&b.data[2 * i], &y, 2);
  }
  return {a, b};
}

// fp32 weights and one small step of them: nearly every element changes.
std::pair<Tensor, Tensor> f32_step(size_t n, double lr, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.f, 0.02f);
  Tensor a{"w", DType::F32, {n}, std::vector<std::byte>(4 * n)}, b = a;
  for (size_t i = 0; i < n; ++i) {
    const float w = g(rng);
    const float w2 =
        w - static_cast<float>(lr * std::clamp(static_cast<double>(g(rng)) / 0.02, -3.0, 3.0));
    std::memcpy(&a.data[4 * i], &w, 4);
    std::memcpy(&b.data[4 * i], &w2, 4);
  }
  return {a, b};
}

uint64_t classed_chunks(const DeltaInfo& info, size_t tensor = 0) {
  return info.tensors[tensor].chunks[static_cast<size_t>(ChunkEncoding::Classed)];
}

std::vector<std::byte> encode_one(const Tensor& a, const Tensor& b, EncodeOptions o = {}) {
  return encode(std::vector<TensorView>{a.view()}, std::vector<TensorView>{b.view()}, {}, o);
}

}  // namespace

TEST_CASE("every dtype round-trips bit-exactly at every density") {
  const DType all[] = {DType::F64,     DType::F32,     DType::F16, DType::BF16,
                       DType::F8_E4M3, DType::F8_E5M2, DType::I64, DType::I32,
                       DType::I16,     DType::I8,      DType::U8,  DType::BOOL,
                       DType::U64,     DType::U32,     DType::U16, DType::F8_E8M0};
  uint64_t seed = 100;
  for (DType d : all) {
    for (double fraction : {0.0, 0.001, 0.03, 0.2, 0.6, 1.0}) {
      CAPTURE(dtype_name(d));
      CAPTURE(fraction);
      Tensor a = random_tensor("t", d, {37, 29}, seed++);
      Tensor b = perturb(a, fraction, seed++);
      EncodeOptions opts;
      opts.chunk_elements = 300;  // several chunks, the last one partial
      auto delta =
          encode(std::vector<TensorView>{a.view()}, std::vector<TensorView>{b.view()}, {}, opts);
      Checkpoint out = flare::delta::apply(std::vector<TensorView>{a.view()}, delta);
      check_same(out.tensors, {b});
    }
  }
}

TEST_CASE("sparse chunks with unchanged blocks, crowded words and a changed last element") {
  // Chunks of several 8192-element blocks: some blocks without a change, words
  // with more than 8 changes, a change in the chunk's last (partial) word.
  auto [a, b] = bf16_step(3 * 8192 + 100, 1e-6, 31);
  for (size_t i = 8192; i < 2 * 8192; ++i) std::memcpy(&b.data[2 * i], &a.data[2 * i], 2);
  for (size_t i = 2 * 8192; i < 2 * 8192 + 64; i += 3) b.data[2 * i] ^= std::byte{1};
  b.data[b.data.size() - 2] ^= std::byte{1};
  for (unsigned k : {1u, 6u, 64u}) {
    CAPTURE(k);
    EncodeOptions o;
    o.context_classes = k;
    auto d = encode(std::vector<TensorView>{a.view()}, std::vector<TensorView>{b.view()}, {}, o);
    CHECK(inspect(d).tensors[0].encoding == "sparse");
    check_same(flare::delta::apply(std::vector<TensorView>{a.view()}, d).tensors, {b});
  }
}

TEST_CASE("-0/+0 and NaN payloads keep their exact bit patterns") {
  const uint32_t patterns[] = {0x00000000, 0x80000000, 0x7fc00000, 0x7fc00001, 0xffc00123,
                               0x7f800001, 0x7f800000, 0xff800000, 0x00000001, 0x80000001};
  Tensor a{"f", DType::F32, {10}, std::vector<std::byte>(40)}, b = a;
  for (size_t i = 0; i < 10; ++i) {
    std::memcpy(&a.data[4 * i], &patterns[i], 4);
    std::memcpy(&b.data[4 * i], &patterns[(i + 1) % 10], 4);
  }
  auto delta = encode(std::vector<TensorView>{a.view()}, std::vector<TensorView>{b.view()});
  check_same(flare::delta::apply(std::vector<TensorView>{a.view()}, delta).tensors, {b});
  // A tensor whose only change is +0 -> -0 is still seen as changed.
  Tensor c = a;
  c.data[3] = std::byte{0x80};
  auto info = inspect(encode(std::vector<TensorView>{a.view()}, std::vector<TensorView>{c.view()}));
  CHECK(info.tensors[0].changed_elements == 1);
}

TEST_CASE("bf16 training steps are stored sparse and far smaller than the checkpoint") {
  auto [a, b] = bf16_step(1 << 18, 1e-6, 3);
  auto delta = encode(std::vector<TensorView>{a.view()}, std::vector<TensorView>{b.view()});
  DeltaInfo info = inspect(delta);
  CHECK(info.tensors[0].encoding == "sparse");
  CHECK(info.tensors[0].density > 0.01);
  CHECK(info.tensors[0].density < 0.06);
  CHECK(info.ratio() > 30);
  check_same(flare::delta::apply(std::vector<TensorView>{a.view()}, delta).tensors, {b});
}

TEST_CASE("added, removed, retyped and unchanged tensors are handled and reported") {
  Tensor keep = random_tensor("keep", DType::F16, {100}, 1);
  Tensor mod_a = random_tensor("mod", DType::F32, {200}, 2);
  Tensor mod_b = perturb(mod_a, 0.05, 3);
  Tensor gone = random_tensor("gone", DType::I32, {10}, 4);
  Tensor re_a = random_tensor("re", DType::BF16, {8, 8}, 5);
  Tensor re_b = random_tensor("re", DType::BF16, {4, 16}, 6);  // same bytes count, new shape
  Tensor ty_a = random_tensor("ty", DType::F32, {16}, 7);
  Tensor ty_b = random_tensor("ty", DType::BF16, {16}, 8);
  Tensor added = random_tensor("added", DType::U8, {50}, 9);
  std::vector<Tensor> base = {keep, mod_a, gone, re_a, ty_a};
  std::vector<Tensor> next = {keep, mod_b, re_b, ty_b, added};
  Metadata meta = {{"step", "7"}};
  auto delta = encode(views(base), views(next), meta);
  DeltaInfo info = inspect(delta);
  CHECK(info.format == "flare-delta-v1");
  CHECK(info.metadata == meta);
  CHECK(info_of(info, "keep").change == TensorChange::Unchanged);
  CHECK(info_of(info, "keep").encoding == "same");
  CHECK(info_of(info, "keep").stored_bytes == 0);
  CHECK(info_of(info, "mod").change == TensorChange::Modified);
  CHECK(info_of(info, "gone").change == TensorChange::Removed);
  CHECK(info_of(info, "re").change == TensorChange::Retyped);
  CHECK(*info_of(info, "re").base_shape == Shape{8, 8});
  CHECK(info_of(info, "ty").change == TensorChange::Retyped);
  CHECK(*info_of(info, "ty").base_dtype == DType::F32);
  CHECK(info_of(info, "added").change == TensorChange::Added);
  CHECK(!info_of(info, "added").base_dtype.has_value());
  Checkpoint out = flare::delta::apply(views(base), delta);
  CHECK(out.metadata == meta);
  check_same(out.tensors, next);
}

TEST_CASE("checksums in the delta are zlib-compatible Adler-32 of the tensors") {
  Tensor a = random_tensor("w", DType::F32, {1000}, 1), b = perturb(a, 0.1, 2);
  EncodeOptions opts;
  opts.chunk_elements = 128;
  DeltaInfo info = inspect(
      encode(std::vector<TensorView>{a.view()}, std::vector<TensorView>{b.view()}, {}, opts));
  uint32_t s = 1, t = 1;
  // Reference Adler-32, straight from RFC 1950.
  auto ref = [](const std::vector<std::byte>& d) {
    uint32_t x = 1, y = 0;
    for (auto c : d) {
      x = (x + std::to_integer<uint32_t>(c)) % 65521;
      y = (y + x) % 65521;
    }
    return (y << 16) | x;
  };
  s = ref(a.data);
  t = ref(b.data);
  CHECK(info.tensors[0].base_adler32 == s);
  CHECK(info.tensors[0].adler32 == t);
}

TEST_CASE("a delta refuses the wrong base") {
  Tensor a = random_tensor("w", DType::BF16, {4096}, 1), b = perturb(a, 0.02, 2);
  auto delta = encode(std::vector<TensorView>{a.view()}, std::vector<TensorView>{b.view()});
  SUBCASE("one element differs") {
    Tensor other = a;
    other.data[1000] ^= std::byte{1};
    CHECK_THROWS_WITH_AS(
        flare::delta::apply(std::vector<TensorView>{other.view()}, delta),
        doctest::Contains("delta does not apply to this base: tensor 'w' chunk 0: base Adler-32"),
        flare::Error);
  }
  SUBCASE("any one element differs, in chunks with few or most elements changed") {
    // The decoder of a sparse chunk checks the output's Adler-32 and sums the
    // base only to name the cause: a wrong base must still be named.
    Tensor f = random_tensor("w", DType::F32, {3000}, 4), g = perturb(f, 0.9, 5);
    auto dense_delta = encode(std::vector<TensorView>{f.view()}, std::vector<TensorView>{g.view()});
    for (auto [base, d] : {std::pair{&a, &delta}, std::pair{&f, &dense_delta}}) {
      for (size_t at = 0; at < base->data.size(); at += 97) {
        for (uint8_t flip : {uint8_t{0x01}, uint8_t{0x80}}) {
          Tensor other = *base;
          other.data[at] ^= std::byte{flip};
          CAPTURE(at);
          CHECK_THROWS_WITH_AS(flare::delta::apply(std::vector<TensorView>{other.view()}, *d),
                               doctest::Contains("delta does not apply to this base: tensor 'w' "
                                                 "chunk 0: base Adler-32"),
                               flare::Error);
        }
      }
    }
  }
  SUBCASE("tensor missing") {
    CHECK_THROWS_WITH_AS(flare::delta::apply(std::vector<TensorView>{}, delta),
                         doctest::Contains("tensor 'w' is missing from the base"), flare::Error);
  }
  SUBCASE("extra tensor") {
    Tensor extra = random_tensor("x", DType::U8, {3}, 3);
    CHECK_THROWS_WITH_AS(
        flare::delta::apply(std::vector<TensorView>{a.view(), extra.view()}, delta),
        doctest::Contains("the base has tensor 'x'"), flare::Error);
  }
  SUBCASE("other shape") {
    Tensor reshaped = a;
    reshaped.shape = {64, 64};
    CHECK_THROWS_WITH_AS(flare::delta::apply(std::vector<TensorView>{reshaped.view()}, delta),
                         doctest::Contains("tensor 'w' has a different dtype or shape"),
                         flare::Error);
  }
  SUBCASE("expected identity") {
    ApplyOptions o;
    o.expect_base_identity = "step-3";
    CHECK_THROWS_WITH_AS(flare::delta::apply(std::vector<TensorView>{a.view()}, delta, o),
                         doctest::Contains("made against '', not 'step-3'"), flare::Error);
  }
}

TEST_CASE("files: encode, inspect, apply and verify") {
  testing::ScratchDir dir;
  auto [a, b] = bf16_step(100'000, 1e-5, 9);
  Tensor extra = random_tensor("bias", DType::F32, {33}, 4);
  std::vector<Tensor> base = {a, extra}, next = {b, perturb(extra, 0.5, 5)};
  write_safetensors(dir / "base.safetensors", views(base), {{"step", "1"}});
  write_safetensors(dir / "next.safetensors", views(next), {{"step", "2"}});
  DeltaInfo enc = encode_files(dir / "base.safetensors", dir / "next.safetensors", dir / "d.delta");
  CHECK(enc.base_identity == "base.safetensors");
  DeltaInfo ins = inspect_file(dir / "d.delta");
  CHECK(ins.delta_bytes == enc.delta_bytes);
  CHECK(ins.tensors.size() == 2);
  apply_files(dir / "base.safetensors", dir / "d.delta", dir / "out.safetensors");
  auto read = [](const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  CHECK(read(dir / "out.safetensors") == read(dir / "next.safetensors"));
  CHECK_NOTHROW(verify_files(dir / "base.safetensors", dir / "d.delta", dir / "next.safetensors"));
  CHECK_THROWS_WITH_AS(
      verify_files(dir / "base.safetensors", dir / "d.delta", dir / "base.safetensors"),
      doctest::Contains("verify:"), flare::Error);
  CHECK(dir.file_count() == 4);  // no temporary files left behind
}

TEST_CASE("every exponent-class setting round-trips; context makes training steps smaller") {
  auto [a, b] = bf16_step(1 << 17, 1e-6, 21);
  Tensor f32 = random_tensor("w", DType::F32, {5000}, 22), f32b = perturb(f32, 0.3, 23);
  size_t without_context = 0, with_context = 0;
  for (unsigned k : {0u, 1u, 2u, 6u, 12u, 64u}) {
    for (unsigned w : {1u, 2u, 3u}) {
      CAPTURE(k);
      CAPTURE(w);
      EncodeOptions o;
      o.context_classes = k;
      o.class_width = w;
      auto d = encode(std::vector<TensorView>{a.view()}, std::vector<TensorView>{b.view()}, {}, o);
      check_same(flare::delta::apply(std::vector<TensorView>{a.view()}, d).tensors, {b});
      auto d32 =
          encode(std::vector<TensorView>{f32.view()}, std::vector<TensorView>{f32b.view()}, {}, o);
      check_same(flare::delta::apply(std::vector<TensorView>{f32.view()}, d32).tensors, {f32b});
      if (k == 1 && w == 1) without_context = d.size();
      if (k == 6 && w == 2) with_context = d.size();
    }
  }
  CHECK(with_context < without_context);
  EncodeOptions bad;
  bad.context_classes = 65;
  CHECK_THROWS_WITH_AS(
      encode(std::vector<TensorView>{a.view()}, std::vector<TensorView>{b.view()}, {}, bad),
      doctest::Contains("context_classes must be 0 (by density) or in [1, 64]"), flare::Error);
}

TEST_CASE("by default the exponent classes follow each chunk's density") {
  auto encode_with = [](const Tensor& a, const Tensor& b, unsigned k, unsigned w) {
    EncodeOptions o;
    o.context_classes = k;
    o.class_width = w;
    return encode(std::vector<TensorView>{a.view()}, std::vector<TensorView>{b.view()}, {}, o);
  };
  for (double lr : {1e-6, 1e-5}) {
    CAPTURE(lr);
    auto [a, b] = bf16_step(1 << 17, lr, 41);
    auto d = encode(std::vector<TensorView>{a.view()}, std::vector<TensorView>{b.view()});
    const double density = inspect(d).tensors[0].density;
    const bool many = density >= 0.1;
    CHECK(many == (lr > 5e-6));  // about 3% and 20% changed
    CHECK(d == (many ? encode_with(a, b, 12, 1) : encode_with(a, b, 6, 2)));
    CHECK(d != (many ? encode_with(a, b, 6, 2) : encode_with(a, b, 12, 1)));
    check_same(flare::delta::apply(std::vector<TensorView>{a.view()}, d).tensors, {b});
  }
}

TEST_CASE("apply_into reconstructs into caller-owned buffers that are reused across applies") {
  auto [a, b] = bf16_step(3 << 20, 1e-6, 21);  // several chunks, sparse
  Tensor bias = random_tensor("bias", DType::F32, {300}, 22);
  Tensor bias2 = perturb(bias, 0.3, 23);
  std::vector<Tensor> base = {a, bias};
  auto to_b = encode(views(base), views(std::vector<Tensor>{b, bias2}), {{"step", "1"}});
  auto to_a = encode(views(base), views(base));
  // One set of buffers, filled with garbage first, then reused for two deltas.
  std::vector<Tensor> bufs = {random_tensor("w", DType::BF16, {3 << 20}, 24),
                              random_tensor("bias", DType::F32, {300}, 25)};
  std::vector<OutputTensor> out;
  for (auto& t : bufs) out.push_back({t.name, t.dtype, t.shape, t.data});
  CHECK(apply_into(views(base), to_b, out) == Metadata{{"step", "1"}});
  CHECK((bufs[0].data == b.data));
  CHECK((bufs[1].data == bias2.data));
  apply_into(views(base), to_a, out);
  CHECK((bufs[0].data == a.data));
  CHECK((bufs[1].data == bias.data));

  auto error_of = [&](std::vector<OutputTensor> o) {
    try {
      apply_into(views(base), to_b, o);
    } catch (const flare::Error& e) {
      return e.code + ": " + e.what();
    }
    return std::string("no error");
  };
  CHECK(error_of({out[0]}).find("no output buffer for tensor 'bias'") != std::string::npos);
  CHECK(error_of({out[0], out[1], out[1]}).find("'bias' given twice") != std::string::npos);
  auto extra = out;
  extra.push_back({"other", DType::U8, {1}, bufs[1].data});
  CHECK(error_of(extra).find("the delta has no tensor 'other'") != std::string::npos);
  auto short_buf = out;
  short_buf[1].data = short_buf[1].data.first(8);
  CHECK(error_of(short_buf).find("'bias' has 8 bytes, needs 1200") != std::string::npos);
  auto retyped = out;
  retyped[1].dtype = DType::I32;
  CHECK(error_of(retyped).find("different dtype or shape") != std::string::npos);
  // A corrupt delta is refused; the caller's buffers are then not to be used, the base is intact.
  auto bad = to_b;
  bad[bad.size() - 5] ^= std::byte{0x5a};
  CHECK_THROWS(apply_into(views(base), bad, out));
  CHECK((base[0].data == a.data));
}

TEST_CASE("tensors at odd addresses (another writer's unaligned offsets) encode and apply") {
  // Other writers may put a 3-byte tensor first, leaving every later one
  // misaligned in the mapped file; the codec must not assume alignment.
  std::vector<Tensor> base, next;
  base.push_back(random_tensor("tag", DType::U8, {3}, 30));
  next.push_back(perturb(base[0], 0.5, 31));
  {
    auto [a, b] = bf16_step(200'000, 1e-6, 32);  // sparse
    base.push_back(a);
    next.push_back(b);
  }
  for (auto [dtype, fraction] :
       {std::pair{DType::F32, 0.02}, {DType::F64, 0.5}, {DType::F16, 0.9}}) {
    Tensor t = random_tensor("t" + std::string(dtype_name(dtype)), dtype, {70'001}, 33);
    base.push_back(t);
    next.push_back(perturb(t, fraction, 34));
  }
  // Copies of the tensors packed back to back from an odd address.
  auto packed = [](const std::vector<Tensor>& ts, std::vector<std::byte>& store) {
    size_t total = 1;
    for (const auto& t : ts) total += t.data.size();
    store.assign(total, std::byte{0});
    std::vector<TensorView> v;
    size_t at = 1;
    for (const auto& t : ts) {
      std::memcpy(store.data() + at, t.data.data(), t.data.size());
      v.push_back({t.name, t.dtype, t.shape, std::span(store).subspan(at, t.data.size())});
      at += t.data.size();
    }
    return v;
  };
  std::vector<std::byte> base_store, next_store, out_store;
  auto base_v = packed(base, base_store), next_v = packed(next, next_store);
  auto d = encode(base_v, next_v);
  check_same(flare::delta::apply(base_v, d).tensors, next);

  auto garbage = packed(base, out_store);  // odd-addressed output buffers
  std::vector<OutputTensor> out;
  for (const auto& v : garbage)
    out.push_back({v.name, v.dtype, v.shape,
                   std::span(out_store).subspan(
                       static_cast<size_t>(v.data.data() - out_store.data()), v.data.size())});
  apply_into(base_v, d, out);
  for (size_t i = 0; i < next.size(); ++i)
    CHECK(std::equal(out[i].data.begin(), out[i].data.end(), next[i].data.begin(),
                     next[i].data.end()));
}

TEST_CASE("dense chunks (which flare's encoder no longer writes for training steps) decode") {
  // A bf16 chunk whose dense payload is built by hand: one raw stream of the
  // byte planes of z = zigzag(next - base), low bytes first.
  const size_t n = 1000;
  std::vector<uint16_t> base(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    base[i] = static_cast<uint16_t>(0x3c00 + i * 7);
    next[i] = static_cast<uint16_t>(base[i] + (i % 3 == 0 ? 1 : i % 3 == 1 ? 0 : 0xffff));
  }
  std::vector<std::byte> payload;
  const size_t raw = 2 * n;  // 2000 = varint d0 0f
  payload.push_back(std::byte{0});
  for (int k = 0; k < 2; ++k) {
    payload.push_back(static_cast<std::byte>(0x80 | (raw & 0x7f)));
    payload.push_back(static_cast<std::byte>(raw >> 7));
  }
  for (int q = 0; q < 2; ++q)
    for (size_t i = 0; i < n; ++i) {
      const uint16_t d = static_cast<uint16_t>(next[i] - base[i]);
      const uint16_t z = static_cast<uint16_t>((d << 1) ^ ((d & 0x8000) ? 0xffff : 0));
      payload.push_back(static_cast<std::byte>(z >> (8 * q)));
    }
  std::vector<uint16_t> out(n);
  ChunkSums sums;
  const uint64_t changed =
      decode_chunk(DType::BF16, ChunkEncoding::Dense, payload, std::as_bytes(std::span(base)),
                   std::as_writable_bytes(std::span(out)), &sums);
  CHECK(out == next);
  CHECK(changed == 667);
  CHECK(sums.out == adler32(std::as_bytes(std::span(next))));
  payload.pop_back();  // a short stream is refused
  CHECK_THROWS(decode_chunk(DType::BF16, ChunkEncoding::Dense, payload,
                            std::as_bytes(std::span(base)),
                            std::as_writable_bytes(std::span(out))));
}

TEST_CASE("a sparse chunk refused part way leaves nothing behind for the next chunk") {
  // The decoder keeps per-thread class bitmaps that must be all zeros when a
  // chunk starts: a chunk refused after its bitmaps were set (here, for a
  // trailing byte) must not leave bits that the next chunk would read.
  const size_t n = 1 << 16;
  std::vector<uint16_t> base(n), many(n), one(n);
  uint32_t x = 12345;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    base[i] = static_cast<uint16_t>(0x3800 + (x >> 20) % 0x0800);  // exponents 0x70..0x7f
    many[i] = static_cast<uint16_t>(base[i] + ((x >> 8) % 64 == 3 ? 1 + (x >> 24) % 7 : 0));
  }
  one = base;
  one[n / 2] = static_cast<uint16_t>(one[n / 2] + 1);
  auto bytes = [](const std::vector<uint16_t>& v) { return std::as_bytes(std::span(v)); };
  ChunkParams p;
  p.classes = 1;
  EncodedChunk big = encode_chunk(DType::BF16, bytes(base), bytes(many), p);
  EncodedChunk small = encode_chunk(DType::BF16, bytes(base), bytes(one), p);
  REQUIRE(big.encoding == ChunkEncoding::Sparse);
  REQUIRE(small.encoding == ChunkEncoding::Sparse);
  std::vector<uint16_t> out(n);
  std::vector<std::byte> bad = big.payload;
  bad.push_back(std::byte{0});
  CHECK_THROWS_WITH(decode_chunk(DType::BF16, ChunkEncoding::Sparse, bad, bytes(base),
                                 std::as_writable_bytes(std::span(out))),
                    doctest::Contains("trailing bytes"));
  CHECK(decode_chunk(DType::BF16, ChunkEncoding::Sparse, small.payload, bytes(base),
                     std::as_writable_bytes(std::span(out))) == 1);
  CHECK(out == one);
  CHECK(decode_chunk(DType::BF16, ChunkEncoding::Sparse, big.payload, bytes(base),
                     std::as_writable_bytes(std::span(out))) == big.changed);
  CHECK(out == many);
}

TEST_CASE("chunks with nearly every element changed are stored classed and round-trip") {
  EncodeOptions o;
  o.chunk_elements = 20000;  // several chunks of several blocks, the last one partial
  SUBCASE("fp32 step") {
    auto [a, b] = f32_step(3 * 20000 + 1234, 1e-6, 61);
    auto d = encode_one(a, b, o);
    DeltaInfo info = inspect(d);
    CHECK(info.tensors[0].density > 0.99);
    CHECK(classed_chunks(info) == 4);
    CHECK(info.tensors[0].encoding == "classed");
    CHECK(info.ratio() > 2);
    check_same(flare::delta::apply(std::vector<TensorView>{a.view()}, d).tensors, {b});
    // Without the exponent context: one class, larger.
    EncodeOptions flat = o;
    flat.context_classes = 1;
    auto d1 = encode_one(a, b, flat);
    CHECK(classed_chunks(inspect(d1)) == 4);
    CHECK(d.size() < d1.size());
    check_same(flare::delta::apply(std::vector<TensorView>{a.view()}, d1).tensors, {b});
  }
  SUBCASE("bf16 step") {
    auto [a, b] = bf16_step(2 * 20000 + 5000, 1e-2, 62);
    auto d = encode_one(a, b, o);
    DeltaInfo info = inspect(d);
    CHECK(info.tensors[0].density > 0.9);
    CHECK(classed_chunks(info) == 3);
    check_same(flare::delta::apply(std::vector<TensorView>{a.view()}, d).tensors, {b});
  }
  SUBCASE("every float width, every class setting") {
    uint64_t seed = 70;
    for (DType dt : {DType::F64, DType::F32, DType::F16, DType::BF16, DType::F8_E4M3,
                     DType::F8_E5M2, DType::F8_E8M0}) {
      for (unsigned k : {0u, 2u, 12u, 64u}) {
        CAPTURE(dtype_name(dt));
        CAPTURE(k);
        Tensor a = random_tensor("t", dt, {3001}, seed++);
        Tensor b = perturb(a, 1.0, seed++);
        EncodeOptions ok = o;
        ok.chunk_elements = 1000;
        ok.context_classes = k;
        ok.class_width = 3;
        auto d = encode_one(a, b, ok);
        CHECK(classed_chunks(inspect(d)) + inspect(d).tensors[0].chunks[3] == 4);  // or raw
        check_same(flare::delta::apply(std::vector<TensorView>{a.view()}, d).tensors, {b});
      }
    }
  }
}

TEST_CASE(
    "one tensor mixes classed, sparse and same chunks; a chunk dense only at its start is sparse") {
  const size_t chunk = 16384;
  auto [a, b] = f32_step(4 * chunk, 1e-6, 63);
  // Chunk 1: 3% changed; chunk 2: unchanged; chunk 3: its first block changed, the rest not.
  for (size_t i = chunk; i < 2 * chunk; ++i)
    if (i % 33 != 0) std::memcpy(&b.data[4 * i], &a.data[4 * i], 4);
  std::memcpy(&b.data[4 * 2 * chunk], &a.data[4 * 2 * chunk], 4 * chunk);
  std::memcpy(&b.data[4 * (3 * chunk + 8192)], &a.data[4 * (3 * chunk + 8192)], 4 * (chunk - 8192));
  EncodeOptions o;
  o.chunk_elements = chunk;
  auto d = encode_one(a, b, o);
  const DeltaInfo info = inspect(d);
  const TensorDeltaInfo& t = info.tensors[0];
  CHECK(t.chunks[static_cast<size_t>(ChunkEncoding::Classed)] == 1);
  CHECK(t.chunks[static_cast<size_t>(ChunkEncoding::Sparse)] +
            t.chunks[static_cast<size_t>(ChunkEncoding::Dense)] ==
        2);
  CHECK(t.chunks[static_cast<size_t>(ChunkEncoding::Same)] == 1);
  check_same(flare::delta::apply(std::vector<TensorView>{a.view()}, d).tensors, {b});
  // apply_into, output kept (streamed out of a staging block)
  std::vector<std::byte> store(b.data.size());
  OutputTensor out{"w", DType::F32, b.shape, store};
  apply_into(std::vector<TensorView>{a.view()}, d, std::span(&out, 1));
  CHECK(store == b.data);
}

TEST_CASE("a classed chunk with a bad payload is refused naming the byte; the base is untouched") {
  auto [a, b] = f32_step(5000, 1e-6, 64);
  EncodedChunk c = encode_chunk(DType::F32, a.data, b.data, {.classes = 0});
  REQUIRE(c.encoding == ChunkEncoding::Classed);
  std::vector<std::byte> out(b.data.size());
  CHECK(decode_chunk(DType::F32, ChunkEncoding::Classed, c.payload, a.data, out) == c.changed);
  CHECK(out == b.data);
  auto error = [&](std::vector<std::byte> p) -> std::string {
    try {
      decode_chunk(DType::F32, ChunkEncoding::Classed, p, a.data, out);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "accepted";
  };
  auto with = [&](size_t at, uint8_t v) {
    auto p = c.payload;
    p[at] = std::byte{v};
    return p;
  };
  CHECK(error(with(0, 0)) == "classed chunk has invalid class count 0 at byte 0");
  CHECK(error(with(0, 65)) == "classed chunk has invalid class count 65 at byte 0");
  CHECK(error(with(1, 0)) == "classed chunk has class width 0 at byte 1");
  CHECK(error(with(3, 1)) == "classed chunk has invalid top exponent " +
                                 std::to_string(256 + std::to_integer<int>(c.payload[2])) +
                                 " at bytes 2-3");
  CHECK(error({c.payload.begin(), c.payload.begin() + 3}) == "classed chunk header is truncated");
  CHECK(error({c.payload.begin(), c.payload.begin() + 5}) ==
        "classed chunk: size of class 1 at byte 5 is truncated");
  // Fewer classes: the sizes read no longer add up to the chunk's elements.
  CHECK(error(with(0, 11)).find("classed chunk's classes hold") == 0);
  auto longer = c.payload;
  longer.push_back(std::byte{0});
  CHECK(error(longer) ==
        "classed chunk has 1 trailing bytes from byte " + std::to_string(c.payload.size()));
  auto shorter = c.payload;
  shorter.pop_back();
  CHECK(error(shorter).find("value plane stream at byte ") == 0);
  CHECK(error(shorter).find("runs past the end of the chunk") != std::string::npos);
  // A base whose exponents put more elements in a class than its planes hold.
  std::vector<std::byte> other = a.data;
  for (size_t i = 0; i < 5000; ++i) other[4 * i + 3] = std::byte{0x3f};  // every exponent large
  try {
    decode_chunk(DType::F32, ChunkEncoding::Classed, c.payload, other, out);
    FAIL("accepted a base with other classes");
  } catch (const std::exception& e) {
    CHECK(std::string(e.what()).find("members in the base than its planes hold") !=
          std::string::npos);
  }
  // Through apply: the wrong base is named as such, and is left as it was.
  auto d = encode_one(a, b);
  Tensor wrong = a;
  wrong.data[4 * 17] ^= std::byte{1};
  const Tensor kept = wrong;
  CHECK_THROWS_WITH_AS(flare::delta::apply(std::vector<TensorView>{wrong.view()}, d),
                       doctest::Contains("tensor 'w' chunk 0: base Adler-32"), flare::Error);
  CHECK(wrong.data == kept.data);
}
