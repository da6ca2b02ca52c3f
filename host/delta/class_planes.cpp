// GCC 12's AVX-512 intrinsics start from _mm512_undefined_epi32(), which
// -Wmaybe-uninitialized reports wherever they are inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "delta/class_planes.hpp"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <iterator>

#include "delta/unaligned.hpp"
#include "delta/zigzag.hpp"

namespace flare::delta {

ClassRule::ClassRule(ExponentField f, unsigned k, unsigned w, unsigned t)
    : field(f), classes(k), width(w), top(t) {
  std::fill(std::begin(of_exponent), std::end(of_exponent), uint8_t{0});
  const unsigned emask = f.bits ? (1u << f.bits) - 1 : 0;
  if (classes > 1)
    for (unsigned e = 0; e <= emask; ++e)
      of_exponent[e] = static_cast<uint8_t>(e > top ? 0 : std::min(classes - 1, (top - e) / width));
}

namespace {

inline unsigned exponent_mask(const ClassRule& r) {
  return r.field.bits ? (1u << r.field.bits) - 1 : 0;
}

template <typename T>
uint64_t split_portable(const std::byte* base, const std::byte* next, size_t n, const ClassRule& r,
                        std::byte* const* planes, uint64_t* at) {
  constexpr size_t B = sizeof(T);
  const unsigned emask = exponent_mask(r);
  uint64_t changed = 0;
  for (size_t i = 0; i < n; ++i) {
    const T b = load<T>(base + i * B);
    const T z = zigzag(load<T>(next + i * B), b);
    const unsigned k = r.of_exponent[static_cast<unsigned>(b >> r.field.shift) & emask];
    const uint64_t a = at[k]++;
    for (size_t q = 0; q < B; ++q) planes[k * B + q][a] = static_cast<std::byte>(z >> (8 * q));
    changed += z != 0;
  }
  return changed;
}

template <typename T>
bool merge_portable(const std::byte* base, std::byte* out, size_t n, const ClassRule& r,
                    const std::byte* const* planes, uint64_t* at, const uint64_t* members,
                    uint64_t* changed) {
  constexpr size_t B = sizeof(T);
  const unsigned emask = exponent_mask(r);
  uint64_t nonzero = 0;
  for (size_t i = 0; i < n; ++i) {
    const T b = load<T>(base + i * B);
    const unsigned k = r.of_exponent[static_cast<unsigned>(b >> r.field.shift) & emask];
    const uint64_t a = at[k];
    if (a >= members[k]) return false;
    at[k] = a + 1;
    T z = 0;
    for (size_t q = 0; q < B; ++q)
      z |= static_cast<T>(static_cast<T>(std::to_integer<T>(planes[k * B + q][a])) << (8 * q));
    nonzero += z != 0;
    const T v = unzigzag_add(b, z);
    std::memcpy(out + i * B, &v, B);
  }
  *changed += nonzero;
  return true;
}

// --- AVX-512 (BW, VBMI, VBMI2): 64 elements at a time, 16- and 32-bit
// elements with exponent fields of at most 8 bits. The class masks come from
// byte compares of top - e (saturated: class 0 above top); each class's bytes
// of every plane are compressed out of (split) or expanded into (merge) one
// register per plane, with no branch per element or class.

#define FLARE_AVX512_PLANES \
  __attribute__((target("avx512f,avx512bw,avx512vbmi,avx512vbmi2,popcnt")))

// Byte order within one register of 64 / B elements: plane-major (all low
// bytes, then all next bytes, ...) and back.
template <size_t B>
constexpr std::array<uint8_t, 64> to_planes() {
  std::array<uint8_t, 64> idx{};
  for (size_t q = 0; q < B; ++q)
    for (size_t i = 0; i < 64 / B; ++i) idx[q * (64 / B) + i] = static_cast<uint8_t>(B * i + q);
  return idx;
}
template <size_t B>
constexpr std::array<uint8_t, 64> from_planes() {
  std::array<uint8_t, 64> idx{};
  for (size_t q = 0; q < B; ++q)
    for (size_t i = 0; i < 64 / B; ++i) idx[B * i + q] = static_cast<uint8_t>(q * (64 / B) + i);
  return idx;
}
alignas(64) constexpr auto kToPlanes2 = to_planes<2>();
alignas(64) constexpr auto kToPlanes4 = to_planes<4>();
alignas(64) constexpr auto kFromPlanes2 = from_planes<2>();
alignas(64) constexpr auto kFromPlanes4 = from_planes<4>();

// B registers of plane-major elements -> B registers, each one plane of all
// 64 elements (and back: the same exchange of 128-bit lanes).
template <size_t B>
FLARE_AVX512_PLANES inline void exchange_lanes(__m512i* v) {
  if constexpr (B == 2) {
    const __m512i a = _mm512_shuffle_i64x2(v[0], v[1], 0x44);
    const __m512i b = _mm512_shuffle_i64x2(v[0], v[1], 0xee);
    v[0] = a;
    v[1] = b;
  } else {
    const __m512i t0 = _mm512_shuffle_i64x2(v[0], v[1], 0x44);
    const __m512i t1 = _mm512_shuffle_i64x2(v[2], v[3], 0x44);
    const __m512i t2 = _mm512_shuffle_i64x2(v[0], v[1], 0xee);
    const __m512i t3 = _mm512_shuffle_i64x2(v[2], v[3], 0xee);
    v[0] = _mm512_shuffle_i64x2(t0, t1, 0x88);
    v[1] = _mm512_shuffle_i64x2(t0, t1, 0xdd);
    v[2] = _mm512_shuffle_i64x2(t2, t3, 0x88);
    v[3] = _mm512_shuffle_i64x2(t2, t3, 0xdd);
  }
}

// A rule's classes as split_avx512 and merge_avx512 both sort elements into them, so that
// the two agree on every element's class.
struct Avx512Classes {
  __m128i shift;
  __m512i emask, top;
  unsigned reachable;  // classes whose members can exist (k * W <= 255: top - e fits a byte)
  unsigned width;
};

FLARE_AVX512_PLANES inline Avx512Classes avx512_classes(const ClassRule& r) {
  return {_mm_cvtsi32_si128(static_cast<int>(r.field.shift)),
          _mm512_set1_epi8(static_cast<char>(exponent_mask(r))),
          _mm512_set1_epi8(static_cast<char>(r.top)), std::min(r.classes, 255 / r.width + 1),
          r.width};
}

// The lanes of dist (class_distance) in class k + 1 or above; none past the last class.
FLARE_AVX512_PLANES inline uint64_t above_class(const Avx512Classes& c, __m512i dist, unsigned k) {
  return k + 1 < c.reachable
             ? _mm512_cmpge_epu8_mask(dist, _mm512_set1_epi8(static_cast<char>((k + 1) * c.width)))
             : 0;
}

// top - e of the 64 elements in b, one byte each in element order (0 where e > top).
template <size_t B>
FLARE_AVX512_PLANES inline __m512i class_distance(const __m512i* b, const Avx512Classes& c) {
  const __m128i shift = c.shift;
  __m512i e;
  if constexpr (B == 4) {
    e = _mm512_castsi128_si512(_mm512_cvtepi32_epi8(_mm512_srl_epi32(b[0], shift)));
    e = _mm512_inserti32x4(e, _mm512_cvtepi32_epi8(_mm512_srl_epi32(b[1], shift)), 1);
    e = _mm512_inserti32x4(e, _mm512_cvtepi32_epi8(_mm512_srl_epi32(b[2], shift)), 2);
    e = _mm512_inserti32x4(e, _mm512_cvtepi32_epi8(_mm512_srl_epi32(b[3], shift)), 3);
  } else {
    e = _mm512_castsi256_si512(_mm512_cvtepi16_epi8(_mm512_srl_epi16(b[0], shift)));
    e = _mm512_inserti64x4(e, _mm512_cvtepi16_epi8(_mm512_srl_epi16(b[1], shift)), 1);
  }
  return _mm512_subs_epu8(c.top, _mm512_and_si512(e, c.emask));
}

template <size_t B>
FLARE_AVX512_PLANES uint64_t split_avx512(const std::byte* base, const std::byte* next, size_t n,
                                          const ClassRule& r, std::byte* const* planes,
                                          uint64_t* at) {
  const Avx512Classes c = avx512_classes(r);
  const __m512i order = _mm512_load_si512(B == 4 ? kToPlanes4.data() : kToPlanes2.data());
  uint64_t changed = 0;
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    __m512i b[B], v[B];
    for (size_t g = 0; g < B; ++g) {
      b[g] = _mm512_loadu_si512(base + (i + g * 64 / B) * B);
      const __m512i x = _mm512_loadu_si512(next + (i + g * 64 / B) * B);
      __m512i z;
      if constexpr (B == 4) {
        const __m512i d = _mm512_sub_epi32(x, b[g]);
        z = _mm512_xor_si512(_mm512_slli_epi32(d, 1), _mm512_srai_epi32(d, 31));
        changed += static_cast<uint64_t>(__builtin_popcount(_mm512_test_epi32_mask(z, z)));
      } else {
        const __m512i d = _mm512_sub_epi16(x, b[g]);
        z = _mm512_xor_si512(_mm512_slli_epi16(d, 1), _mm512_srai_epi16(d, 15));
        changed += static_cast<uint64_t>(__builtin_popcount(_mm512_test_epi16_mask(z, z)));
      }
      v[g] = _mm512_permutexvar_epi8(order, z);
    }
    exchange_lanes<B>(v);
    const __m512i dist = class_distance<B>(b, c);
    uint64_t lo = ~uint64_t{0};  // class >= k
    for (unsigned k = 0; k < c.reachable; ++k) {
      const uint64_t hi = above_class(c, dist, k);
      const __mmask64 m = lo & ~hi;
      lo = hi;
      const uint64_t a = at[k];
      for (size_t q = 0; q < B; ++q)
        _mm512_storeu_si512(planes[k * B + q] + a, _mm512_maskz_compress_epi8(m, v[q]));
      at[k] = a + static_cast<uint64_t>(__builtin_popcountll(m));
    }
  }
  using T = std::conditional_t<B == 4, uint32_t, uint16_t>;
  return changed + split_portable<T>(base + i * B, next + i * B, n - i, r, planes, at);
}

template <size_t B>
FLARE_AVX512_PLANES bool merge_avx512(const std::byte* base, std::byte* out, size_t n,
                                      const ClassRule& r, const std::byte* const* planes,
                                      uint64_t* at, const uint64_t* members, uint64_t* changed) {
  const Avx512Classes c = avx512_classes(r);
  const __m512i order = _mm512_load_si512(B == 4 ? kFromPlanes4.data() : kFromPlanes2.data());
  uint64_t nonzero = 0;
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    __m512i b[B], v[B];
    for (size_t g = 0; g < B; ++g) {
      b[g] = _mm512_loadu_si512(base + (i + g * 64 / B) * B);
      v[g] = _mm512_setzero_si512();
    }
    const __m512i dist = class_distance<B>(b, c);
    uint64_t lo = ~uint64_t{0};
    bool over = false;
    for (unsigned k = 0; k < c.reachable; ++k) {
      const uint64_t hi = above_class(c, dist, k);
      const __mmask64 m = lo & ~hi;
      lo = hi;
      const uint64_t a = at[k];
      for (size_t q = 0; q < B; ++q)
        v[q] = _mm512_or_si512(
            v[q], _mm512_maskz_expand_epi8(m, _mm512_loadu_si512(planes[k * B + q] + a)));
      at[k] = a + static_cast<uint64_t>(__builtin_popcountll(m));
      over |= at[k] > members[k];
    }
    if (over) return false;
    exchange_lanes<B>(v);
    for (size_t g = 0; g < B; ++g) {
      const __m512i z = _mm512_permutexvar_epi8(order, v[g]);
      __m512i o;
      if constexpr (B == 4) {
        const __m512i d = _mm512_xor_si512(
            _mm512_srli_epi32(z, 1),
            _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_and_si512(z, _mm512_set1_epi32(1))));
        o = _mm512_add_epi32(b[g], d);
        nonzero += static_cast<uint64_t>(__builtin_popcount(_mm512_test_epi32_mask(z, z)));
      } else {
        const __m512i d = _mm512_xor_si512(
            _mm512_srli_epi16(z, 1),
            _mm512_sub_epi16(_mm512_setzero_si512(), _mm512_and_si512(z, _mm512_set1_epi16(1))));
        o = _mm512_add_epi16(b[g], d);
        nonzero += static_cast<uint64_t>(__builtin_popcount(_mm512_test_epi16_mask(z, z)));
      }
      _mm512_storeu_si512(out + (i + g * 64 / B) * B, o);
    }
  }
  *changed += nonzero;
  using T = std::conditional_t<B == 4, uint32_t, uint16_t>;
  return merge_portable<T>(base + i * B, out + i * B, n - i, r, planes, at, members, changed);
}

bool avx512_applies(size_t esize, const ClassRule& r, Isa isa) {
  static const bool vbmi = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vbmi");
  }();
  return isa == Isa::Avx512 && vbmi && (esize == 2 || esize == 4) && r.field.bits <= 8 &&
         r.classes >= 1 && r.width >= 1 && r.top <= 255;
}

}  // namespace

uint64_t split_class_planes(const std::byte* base, const std::byte* next, size_t elements,
                            size_t esize, const ClassRule& rule, std::byte* const* planes,
                            uint64_t* at, Isa isa) {
  if (avx512_applies(esize, rule, isa))
    return esize == 4 ? split_avx512<4>(base, next, elements, rule, planes, at)
                      : split_avx512<2>(base, next, elements, rule, planes, at);
  switch (esize) {
    case 1:
      return split_portable<uint8_t>(base, next, elements, rule, planes, at);
    case 2:
      return split_portable<uint16_t>(base, next, elements, rule, planes, at);
    case 4:
      return split_portable<uint32_t>(base, next, elements, rule, planes, at);
    default:
      return split_portable<uint64_t>(base, next, elements, rule, planes, at);
  }
}

bool merge_class_planes(const std::byte* base, std::byte* out, size_t elements, size_t esize,
                        const ClassRule& rule, const std::byte* const* planes, uint64_t* at,
                        const uint64_t* members, uint64_t* changed, Isa isa) {
  if (avx512_applies(esize, rule, isa))
    return esize == 4 ? merge_avx512<4>(base, out, elements, rule, planes, at, members, changed)
                      : merge_avx512<2>(base, out, elements, rule, planes, at, members, changed);
  switch (esize) {
    case 1:
      return merge_portable<uint8_t>(base, out, elements, rule, planes, at, members, changed);
    case 2:
      return merge_portable<uint16_t>(base, out, elements, rule, planes, at, members, changed);
    case 4:
      return merge_portable<uint32_t>(base, out, elements, rule, planes, at, members, changed);
    default:
      return merge_portable<uint64_t>(base, out, elements, rule, planes, at, members, changed);
  }
}

}  // namespace flare::delta
