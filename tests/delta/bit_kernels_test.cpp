#include "delta/bit_kernels.hpp"

#include <doctest/doctest.h>

#include <random>
#include <vector>

#include "helpers.hpp"

using namespace flare::delta;

namespace {

template <typename T>
unsigned exponent_of(const std::byte* p, ExponentField f) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return static_cast<unsigned>((v >> f.shift) & ((T{1} << f.bits) - 1));
}

template <typename T>
void check_le_masks(ExponentField f, uint64_t seed) {
  const size_t words = 37;
  auto data = testing::random_bytes(words * 64 * sizeof(T), seed);
  // Thresholds below every exponent, inside the range, and above it.
  const int16_t thr[] = {
      -1, 0, 1, 3, static_cast<int16_t>((1 << f.bits) / 2), static_cast<int16_t>((1 << f.bits) - 2),
      300};
  const unsigned count = sizeof(thr) / sizeof(thr[0]);
  std::vector<uint64_t> want(words * count, 0);
  for (size_t w = 0; w < words; ++w)
    for (unsigned t = 0; t < count; ++t)
      for (unsigned j = 0; j < 64; ++j) {
        const int e = static_cast<int>(exponent_of<T>(data.data() + (w * 64 + j) * sizeof(T), f));
        if (e <= thr[t]) want[w * count + t] |= uint64_t{1} << j;
      }
  for (Isa isa : testing::runnable_isas()) {
    std::vector<uint64_t> got(words * count, 0xdead);
    le_masks(data.data(), words, sizeof(T), f, thr, count, got.data(), isa);
    CHECK_MESSAGE(got == want, "isa ", static_cast<int>(isa), ", element size ", sizeof(T));
  }
}

}  // namespace

TEST_CASE("le_masks: every instruction-set path agrees with a per-element reference") {
  check_le_masks<uint16_t>({7, 8}, 1);   // bf16
  check_le_masks<uint16_t>({10, 5}, 2);  // f16
  check_le_masks<uint32_t>({23, 8}, 3);  // f32
  check_le_masks<uint8_t>({3, 4}, 4);    // f8 e4m3
  check_le_masks<uint64_t>({52, 11}, 5);
}

namespace {
// Per word, the members' bits in order, each set when the member's number
// (counted on from seen) is set in the bitmap; seen is advanced.
std::vector<uint64_t> deposit_reference(const std::vector<uint64_t>& members,
                                        const std::vector<uint64_t>& bitmap, uint64_t& seen) {
  std::vector<uint64_t> out(members.size(), 0);
  for (size_t w = 0; w < members.size(); ++w)
    for (unsigned j = 0; j < 64; ++j)
      if ((members[w] >> j) & 1) {
        if ((bitmap[seen / 64] >> (seen % 64)) & 1) out[w] |= uint64_t{1} << j;
        ++seen;
      }
  return out;
}
}  // namespace

TEST_CASE("deposit_class_bits puts a class's changed element numbers onto its members") {
  std::mt19937_64 rng(7);
  const size_t words = 130;
  for (int round = 0; round < 20; ++round) {
    // Nested masks "class >= k" (lo) and "class >= k + 1" (hi), interleaved
    // with a stride as the codec stores them; densities vary by round.
    std::vector<uint64_t> lo(words), hi(words), ge(2 * words);
    const unsigned thin = round % 4;
    for (size_t w = 0; w < words; ++w) {
      uint64_t a = rng();
      for (unsigned q = 0; q < thin; ++q) a &= rng();
      lo[w] = ge[2 * w] = a;
      hi[w] = ge[2 * w + 1] = a & rng();
    }
    std::vector<uint64_t> bitmap(2 * words + 2);
    for (auto& x : bitmap) x = rng() & rng();
    const uint64_t seen0 = rng() % 50;

    struct Case {
      const uint64_t* lo;
      const uint64_t* hi;
      std::vector<uint64_t> members;
    };
    std::vector<uint64_t> between(words), above(words), all(words, ~uint64_t{0});
    for (size_t w = 0; w < words; ++w) between[w] = lo[w] & ~hi[w], above[w] = ~hi[w];
    const Case cases[] = {{ge.data(), ge.data() + 1, between},
                          {nullptr, ge.data() + 1, above},  // no lo: every element
                          {ge.data(), nullptr, lo},         // no hi: none above
                          {nullptr, nullptr, all}};
    for (const Case& c : cases) {
      uint64_t want_seen = seen0;
      const auto want = deposit_reference(c.members, bitmap, want_seen);
      for (Isa isa : testing::runnable_isas()) {
        std::vector<uint64_t> got(words, 0);
        CHECK(deposit_class_bits(c.lo, c.hi, 2, words, bitmap.data(), seen0, got.data(), isa) ==
              want_seen);
        CHECK_MESSAGE(got == want, "isa ", static_cast<int>(isa));
      }
    }
  }
}

TEST_CASE("flatten_bits lists the set bits' positions on every instruction-set path") {
  std::mt19937_64 rng(9);
  const size_t words = 200;
  std::vector<uint64_t> masks(words);
  for (size_t w = 0; w < words; ++w) {
    // Empty, sparse, half and full words, and everything between.
    switch (w % 5) {
      case 0:
        masks[w] = 0;
        break;
      case 1:
        masks[w] = rng() & rng() & rng();
        break;
      case 2:
        masks[w] = rng();
        break;
      case 3:
        masks[w] = ~uint64_t{0};
        break;
      default:
        masks[w] = rng() | rng();
        break;
    }
  }
  const uint32_t offset = 1000;
  std::vector<uint32_t> want;
  for (size_t w = 0; w < words; ++w)
    for (unsigned j = 0; j < 64; ++j)
      if ((masks[w] >> j) & 1) want.push_back(offset + static_cast<uint32_t>(64 * w + j));
  for (Isa isa : testing::runnable_isas()) {
    std::vector<uint32_t> got(words * 64 + 64, 0);
    const size_t n = flatten_bits(masks.data(), words, offset, got.data(), isa);
    got.resize(n);
    CHECK_MESSAGE(got == want, "isa ", static_cast<int>(isa));
  }
}

TEST_CASE("deposit_all_classes matches one deposit_class_bits per class") {
  std::mt19937_64 rng(11);
  const size_t words = 70;
  for (unsigned K = 2; K <= 12; ++K) {
    // Nested masks "class >= 1..K-1" per word, as le_masks writes them.
    std::vector<uint64_t> ge(words * (K - 1));
    for (size_t w = 0; w < words; ++w) {
      uint64_t m = rng() | rng();
      for (unsigned t = 0; t + 1 < K; ++t) ge[w * (K - 1) + t] = m &= rng() | rng();
    }
    // Class 1 has no changes (its bitmap is all zeros and it is not live).
    std::vector<std::vector<uint64_t>> bitmaps(K, std::vector<uint64_t>(words + 2));
    std::vector<const uint64_t*> bits(K);
    std::vector<uint64_t> seen0(K);
    bool live[12];
    for (unsigned k = 0; k < K; ++k) {
      live[k] = k != 1;
      if (live[k])
        for (auto& x : bitmaps[k]) x = rng() & rng();
      bits[k] = bitmaps[k].data();
      seen0[k] = live[k] ? rng() % 40 : 5;
    }
    std::vector<uint64_t> want(words, 0), want_seen = seen0;
    for (unsigned k = 0; k < K; ++k)
      if (live[k])
        want_seen[k] =
            deposit_class_bits(k ? ge.data() + k - 1 : nullptr, k + 1 < K ? ge.data() + k : nullptr,
                               K - 1, words, bits[k], seen0[k], want.data(), Isa::Portable);
    if (best_isa() == Isa::Portable) {
      CHECK_FALSE(
          deposit_all_classes(ge.data(), K, words, bits.data(), seen0.data(), live, want.data()));
      continue;
    }
    std::vector<uint64_t> got(words, 0), seen = seen0;
    REQUIRE(deposit_all_classes(ge.data(), K, words, bits.data(), seen.data(), live, got.data()));
    CHECK_MESSAGE(got == want, K, " classes");
    CHECK(seen == want_seen);
  }
  uint64_t seen[13] = {}, chg[1] = {};
  const uint64_t* none[13] = {};
  bool live[13] = {};
  CHECK_FALSE(deposit_all_classes(nullptr, 13, 0, none, seen, live, chg));
}
