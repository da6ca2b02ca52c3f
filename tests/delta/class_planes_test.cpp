#include "delta/class_planes.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include "delta/unaligned.hpp"
#include "helpers.hpp"

using namespace flare::delta;

namespace {

// The planes split_class_planes must write, element by element from the
// format's rule (class 0 above top, else min(K - 1, (top - e) / W)).
template <typename T>
std::vector<std::vector<std::byte>> reference_planes(const std::vector<std::byte>& base,
                                                     const std::vector<std::byte>& next,
                                                     const ClassRule& r, uint64_t* changed) {
  const size_t n = base.size() / sizeof(T);
  std::vector<std::vector<std::byte>> planes(r.classes * sizeof(T));
  *changed = 0;
  for (size_t i = 0; i < n; ++i) {
    const T b = load<T>(&base[i * sizeof(T)]), x = load<T>(&next[i * sizeof(T)]);
    const unsigned e =
        r.field.bits ? static_cast<unsigned>(b >> r.field.shift) & ((1u << r.field.bits) - 1) : 0;
    const unsigned k = e > r.top ? 0 : std::min(r.classes - 1, (r.top - e) / r.width);
    const T d = static_cast<T>(x - b);
    const T z = static_cast<T>(static_cast<T>(d << 1) ^
                               static_cast<T>(-static_cast<T>(d >> (8 * sizeof(T) - 1))));
    for (size_t q = 0; q < sizeof(T); ++q)
      planes[k * sizeof(T) + q].push_back(static_cast<std::byte>(z >> (8 * q)));
    *changed += z != 0;
  }
  return planes;
}

template <typename T>
void check_paths(ExponentField f, unsigned classes, unsigned width, unsigned top, size_t n,
                 uint64_t seed) {
  CAPTURE(sizeof(T));
  CAPTURE(classes);
  CAPTURE(width);
  CAPTURE(top);
  CAPTURE(n);
  const std::vector<std::byte> base = testing::random_bytes(n * sizeof(T), seed);
  std::vector<std::byte> next = base;
  // Most elements move by a few units, some stay, some take any value.
  for (size_t i = 0; i < n; ++i) {
    T v = load<T>(&base[i * sizeof(T)]);
    const unsigned r = static_cast<unsigned>((i * 2654435761u + seed) >> 7) % 16;
    if (r == 0) continue;
    v = r == 1 ? static_cast<T>(v ^ static_cast<T>(i * 0x9e3779b97f4a7c15ull))
               : static_cast<T>(v + (r % 2 ? r : -static_cast<T>(r)));
    std::memcpy(&next[i * sizeof(T)], &v, sizeof(T));
  }
  const ClassRule rule(f, classes, width, top);
  uint64_t want_changed = 0;
  const auto want = reference_planes<T>(base, next, rule, &want_changed);
  for (Isa isa : testing::runnable_isas()) {
    CAPTURE(static_cast<int>(isa));
    std::vector<std::vector<std::byte>> planes(classes * sizeof(T));
    std::vector<std::byte*> ptr;
    for (auto& p : planes) {
      p.assign(n + 64, std::byte{0xee});
      ptr.push_back(p.data());
    }
    std::vector<uint64_t> at(classes, 0);
    // In two calls, as the encoder splits a chunk block by block.
    const size_t half = n / 2 + 7 > n ? n : n / 2 + 7;
    uint64_t changed = split_class_planes(base.data(), next.data(), half, sizeof(T), rule,
                                          ptr.data(), at.data(), isa);
    changed += split_class_planes(base.data() + half * sizeof(T), next.data() + half * sizeof(T),
                                  n - half, sizeof(T), rule, ptr.data(), at.data(), isa);
    CHECK(changed == want_changed);
    for (unsigned k = 0; k < classes; ++k)
      for (size_t q = 0; q < sizeof(T); ++q) {
        const auto& w = want[k * sizeof(T) + q];
        REQUIRE(at[k] == w.size());
        CHECK(std::equal(w.begin(), w.end(), planes[k * sizeof(T) + q].begin()));
      }

    std::vector<const std::byte*> cptr(ptr.begin(), ptr.end());
    std::vector<uint64_t> members = at, at2(classes, 0);
    std::vector<std::byte> out(n * sizeof(T));
    uint64_t merged = 0;
    REQUIRE(merge_class_planes(base.data(), out.data(), half, sizeof(T), rule, cptr.data(),
                               at2.data(), members.data(), &merged, isa));
    REQUIRE(merge_class_planes(base.data() + half * sizeof(T), out.data() + half * sizeof(T),
                               n - half, sizeof(T), rule, cptr.data(), at2.data(), members.data(),
                               &merged, isa));
    CHECK(out == next);
    CHECK(merged == want_changed);
    CHECK(at2 == members);
    // In place (out = base), as the decoder may build a block.
    std::vector<std::byte> inplace = base;
    std::fill(at2.begin(), at2.end(), 0);
    merged = 0;
    REQUIRE(merge_class_planes(inplace.data(), inplace.data(), n, sizeof(T), rule, cptr.data(),
                               at2.data(), members.data(), &merged, isa));
    CHECK(inplace == next);
    // A class whose planes hold one member fewer than the base has is refused.
    for (unsigned k = 0; k < classes; ++k) {
      if (!members[k]) continue;
      std::vector<uint64_t> fewer = members;
      --fewer[k];
      std::fill(at2.begin(), at2.end(), 0);
      CHECK_FALSE(merge_class_planes(base.data(), out.data(), n, sizeof(T), rule, cptr.data(),
                                     at2.data(), fewer.data(), &merged, isa));
      break;
    }
  }
}

}  // namespace

TEST_CASE("class planes: every instruction-set path splits and merges as the format's rule says") {
  uint64_t seed = 7;
  struct Setting {
    unsigned classes, width;
  };
  const Setting settings[] = {{1, 1}, {6, 2}, {12, 1}, {64, 1}, {3, 200}, {40, 9}};
  for (size_t n : {size_t{0}, size_t{1}, size_t{63}, size_t{64}, size_t{130}, size_t{1000}}) {
    for (const Setting& s : settings) {
      for (unsigned top : {0u, 100u, 127u, 254u}) {
        check_paths<uint16_t>({.shift = 7, .bits = 8}, s.classes, s.width, top, n, seed++);
        check_paths<uint32_t>({.shift = 23, .bits = 8}, s.classes, s.width, top, n, seed++);
        check_paths<uint8_t>({.shift = 3, .bits = 4}, s.classes, s.width, top % 15, n, seed++);
        check_paths<uint64_t>({.shift = 52, .bits = 11}, s.classes, s.width, top * 8, n, seed++);
      }
      // F16 (5-bit exponents) and an integer dtype (no exponent: one class).
      check_paths<uint16_t>({.shift = 10, .bits = 5}, s.classes, s.width, 20, n, seed++);
    }
    check_paths<uint32_t>({.shift = 0, .bits = 0}, 1, 1, 0, n, seed++);
  }
}
