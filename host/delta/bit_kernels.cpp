#include "delta/bit_kernels.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <iterator>

#include "delta/unaligned.hpp"

namespace flare::delta {
namespace {

// Bits of 16 elements (e bytes each) differing, from SSE2 equality compares.
inline uint32_t neq16_x8(const std::byte* a, const std::byte* b) {
  __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a));
  __m128i y = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b));
  return ~static_cast<uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(x, y))) & 0xffffu;
}
inline uint32_t neq16_x16(const std::byte* a, const std::byte* b) {
  auto ld = [](const std::byte* p, int i) {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p) + i);
  };
  __m128i e0 = _mm_cmpeq_epi16(ld(a, 0), ld(b, 0));
  __m128i e1 = _mm_cmpeq_epi16(ld(a, 1), ld(b, 1));
  return ~static_cast<uint32_t>(_mm_movemask_epi8(_mm_packs_epi16(e0, e1))) & 0xffffu;
}
inline uint32_t neq16_x32(const std::byte* a, const std::byte* b) {
  auto ld = [](const std::byte* p, int i) {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p) + i);
  };
  __m128i e0 =
      _mm_packs_epi32(_mm_cmpeq_epi32(ld(a, 0), ld(b, 0)), _mm_cmpeq_epi32(ld(a, 1), ld(b, 1)));
  __m128i e1 =
      _mm_packs_epi32(_mm_cmpeq_epi32(ld(a, 2), ld(b, 2)), _mm_cmpeq_epi32(ld(a, 3), ld(b, 3)));
  return ~static_cast<uint32_t>(_mm_movemask_epi8(_mm_packs_epi16(e0, e1))) & 0xffffu;
}

template <typename T>
uint64_t scalar_neq(const std::byte* a, const std::byte* b, size_t n) {
  uint64_t m = 0;
  for (size_t j = 0; j < n; ++j)
    m |= static_cast<uint64_t>(load<T>(a + j * sizeof(T)) != load<T>(b + j * sizeof(T))) << j;
  return m;
}

template <typename T>
uint64_t change_masks_t(const std::byte* a, const std::byte* b, size_t elements, uint64_t* out) {
  const size_t full = elements / 64;
  uint64_t total = 0;
  for (size_t w = 0; w < full; ++w) {
    const std::byte* pa = a + w * 64 * sizeof(T);
    const std::byte* pb = b + w * 64 * sizeof(T);
    uint64_t m = 0;
    if constexpr (sizeof(T) == 8) {
      m = scalar_neq<T>(pa, pb, 64);
    } else {
      for (int q = 0; q < 4; ++q) {
        const size_t off = static_cast<size_t>(q) * 16 * sizeof(T);
        uint32_t bits;
        if constexpr (sizeof(T) == 1) bits = neq16_x8(pa + off, pb + off);
        if constexpr (sizeof(T) == 2) bits = neq16_x16(pa + off, pb + off);
        if constexpr (sizeof(T) == 4) bits = neq16_x32(pa + off, pb + off);
        m |= static_cast<uint64_t>(bits) << (16 * q);
      }
    }
    out[w] = m;
    total += static_cast<uint64_t>(__builtin_popcountll(m));
  }
  if (size_t rest = elements - full * 64) {
    uint64_t m = scalar_neq<T>(a + full * 64 * sizeof(T), b + full * 64 * sizeof(T), rest);
    out[full] = m;
    total += static_cast<uint64_t>(__builtin_popcountll(m));
  }
  return total;
}

// 16-bit floats: exponent fields fit int16, so the loop vectorizes with SSE2.
unsigned max_exponent_16(const std::byte* data, size_t n, ExponentField f) {
  const int16_t all = static_cast<int16_t>((1 << f.bits) - 1);
  int16_t top = 0;
  for (size_t i = 0; i < n; ++i) {
    int16_t e = static_cast<int16_t>((load<uint16_t>(data + 2 * i) >> f.shift) & all);
    e = e == all ? 0 : e;
    top = e > top ? e : top;
  }
  return static_cast<unsigned>(top);
}

template <typename T>
unsigned max_exponent_t(const std::byte* data, size_t n, ExponentField f) {
  const T all = static_cast<T>((T{1} << f.bits) - 1);
  T top = 0;
  for (size_t i = 0; i < n; ++i) {
    T e = static_cast<T>((load<T>(data + i * sizeof(T)) >> f.shift) & all);
    if (e != all && e > top) top = e;
  }
  return static_cast<unsigned>(top);
}

template <typename T>
void le_masks_sse2(const std::byte* data, size_t words, ExponentField f, const int16_t* thr,
                   unsigned count, uint64_t* ge) {
  for (size_t w = 0; w < words; ++w) {
    __m128i e[8];
    exponents64<T>(data + w * 64 * sizeof(T), f, e);
    le_masks64(e, thr, count, ge + w * count);
  }
}

// 16-bit elements, 64 per word: the exponents (at most 8 bits for 16-bit
// floats) packed to bytes in two AVX2 registers, in element order, then one
// signed byte compare per register and threshold (exponent and threshold
// biased by 0x80).
__attribute__((target("avx2"))) void le_masks_avx2_16(const std::byte* data, size_t words,
                                                      ExponentField f, const int16_t* thr,
                                                      unsigned count, uint64_t* ge) {
  const __m128i sh = _mm_cvtsi32_si128(static_cast<int>(f.shift));
  const __m256i mask = _mm256_set1_epi16(static_cast<int16_t>((1 << f.bits) - 1));
  const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
  __m256i key[63];
  bool none[63];
  for (unsigned t = 0; t < count; ++t) {
    none[t] = thr[t] < 0;  // no exponent is <= a negative threshold
    const int k = std::min<int>(thr[t], 255);
    key[t] = _mm256_set1_epi8(static_cast<char>(static_cast<uint8_t>(k) ^ 0x80));
  }
  for (size_t w = 0; w < words; ++w) {
    const __m256i* p = reinterpret_cast<const __m256i*>(data + w * 128);
    __m256i a[4];
    for (int i = 0; i < 4; ++i)
      a[i] = _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256(p + i), sh), mask);
    // packus interleaves the 128-bit lanes; 0xD8 restores element order.
    const __m256i e0 =
        _mm256_xor_si256(_mm256_permute4x64_epi64(_mm256_packus_epi16(a[0], a[1]), 0xD8), bias);
    const __m256i e1 =
        _mm256_xor_si256(_mm256_permute4x64_epi64(_mm256_packus_epi16(a[2], a[3]), 0xD8), bias);
    for (unsigned t = 0; t < count; ++t) {
      const uint64_t gt =
          static_cast<uint64_t>(
              static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpgt_epi8(e0, key[t])))) |
          static_cast<uint64_t>(
              static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpgt_epi8(e1, key[t]))))
              << 32;
      ge[w * count + t] = none[t] ? 0 : ~gt;
    }
  }
}

// The same with AVX-512BW: the 64 exponents as bytes of one register, then one
// unsigned byte compare into a mask register per threshold.
__attribute__((target("avx512f,avx512bw"))) void le_masks_avx512_16(const std::byte* data,
                                                                    size_t words, ExponentField f,
                                                                    const int16_t* thr,
                                                                    unsigned count, uint64_t* ge) {
  const __m512i mask = _mm512_set1_epi16(static_cast<int16_t>((1 << f.bits) - 1));
  // packus interleaves a and b by 64-bit quarters of each 128-bit lane; this restores the order.
  const __m512i order = _mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7);
  __m512i key[63];
  uint64_t keep[63];  // all ones, or zero for a negative threshold (no exponent is below it)
  for (unsigned t = 0; t < count; ++t) {
    keep[t] = thr[t] < 0 ? 0 : ~uint64_t{0};
    key[t] = _mm512_set1_epi8(static_cast<char>(std::clamp<int>(thr[t], 0, 255)));
  }
  for (size_t w = 0; w < words; ++w) {
    const std::byte* p = data + w * 128;
    const __m512i a = _mm512_and_si512(_mm512_srli_epi16(_mm512_loadu_si512(p), f.shift), mask);
    const __m512i b =
        _mm512_and_si512(_mm512_srli_epi16(_mm512_loadu_si512(p + 64), f.shift), mask);
    const __m512i e = _mm512_maskz_permutexvar_epi64(0xff, order, _mm512_packus_epi16(a, b));
    for (unsigned t = 0; t < count; ++t)
      ge[w * count + t] = _cvtmask64_u64(_mm512_cmple_epu8_mask(e, key[t])) & keep[t];
  }
}

// 16-bit elements: change masks and the largest exponent below all-ones of a,
// 64 elements (four AVX2 registers of each array) at a time.
__attribute__((target("avx2"))) uint64_t change_masks_top_avx2_16(const std::byte* a,
                                                                  const std::byte* b,
                                                                  size_t elements, ExponentField f,
                                                                  uint64_t* out, unsigned& top) {
  const size_t full = elements / 64;
  const __m128i sh = _mm_cvtsi32_si128(static_cast<int>(f.shift));
  const __m256i all = _mm256_set1_epi16(static_cast<int16_t>((1 << f.bits) - 1));
  __m256i mx = _mm256_setzero_si256();
  uint64_t total = 0;
  for (size_t w = 0; w < full; ++w) {
    const __m256i* pa = reinterpret_cast<const __m256i*>(a + w * 128);
    const __m256i* pb = reinterpret_cast<const __m256i*>(b + w * 128);
    __m256i x[4], eq[4];
    for (int i = 0; i < 4; ++i) {
      x[i] = _mm256_loadu_si256(pa + i);
      eq[i] = _mm256_cmpeq_epi16(x[i], _mm256_loadu_si256(pb + i));
      __m256i e = _mm256_and_si256(_mm256_srl_epi16(x[i], sh), all);
      e = _mm256_andnot_si256(_mm256_cmpeq_epi16(e, all), e);
      mx = _mm256_max_epu16(mx, e);
    }
    // packs interleaves the 128-bit lanes: 0-7, 16-23, 8-15, 24-31; 0xD8 restores the order.
    const __m256i lo = _mm256_permute4x64_epi64(_mm256_packs_epi16(eq[0], eq[1]), 0xD8);
    const __m256i hi = _mm256_permute4x64_epi64(_mm256_packs_epi16(eq[2], eq[3]), 0xD8);
    const uint64_t m =
        ~(static_cast<uint64_t>(static_cast<uint32_t>(_mm256_movemask_epi8(lo))) |
          static_cast<uint64_t>(static_cast<uint32_t>(_mm256_movemask_epi8(hi))) << 32);
    out[w] = m;
    total += static_cast<uint64_t>(__builtin_popcountll(m));
  }
  __m128i m8 = _mm_max_epu16(_mm256_castsi256_si128(mx), _mm256_extracti128_si256(mx, 1));
  m8 = _mm_max_epu16(m8, _mm_srli_si128(m8, 8));
  m8 = _mm_max_epu16(m8, _mm_srli_si128(m8, 4));
  m8 = _mm_max_epu16(m8, _mm_srli_si128(m8, 2));
  unsigned t = static_cast<unsigned>(_mm_extract_epi16(m8, 0));
  if (size_t rest = elements - full * 64) {
    const std::byte* ra = a + full * 128;
    const uint64_t m = scalar_neq<uint16_t>(ra, b + full * 128, rest);
    out[full] = m;
    total += static_cast<uint64_t>(__builtin_popcountll(m));
    if (f.bits) t = std::max(t, max_exponent_16(ra, rest, f));
  }
  if (f.bits) top = std::max(top, t);
  return total;
}

// The 64 bits of `bitmap` from bit s on.
inline uint64_t bits_from(const uint64_t* bitmap, uint64_t s) {
  const uint64_t* p = bitmap + (s >> 6);
  const unsigned sh = static_cast<unsigned>(s & 63);
  return (p[0] >> sh) | ((p[1] << 1) << (63 - sh));  // two shifts keep sh == 0 defined
}

// Software pdep: the low bits of src onto the set bits of mask, lowest first.
inline uint64_t pdep_portable(uint64_t src, uint64_t mask) {
  uint64_t out = 0;
  for (; mask && src; src >>= 1, mask &= mask - 1)
    if (src & 1) out |= mask & (~mask + 1);
  return out;
}

// The words' class masks: lo or hi absent reads as all ones or none.
struct ClassWords {
  const uint64_t* lo;
  const uint64_t* hi;
  size_t lo_stride, hi_stride;
  ClassWords(const uint64_t* l, const uint64_t* h, size_t stride)
      : lo(l ? l : &kOnes),
        hi(h ? h : &kNone),
        lo_stride(l ? stride : 0),
        hi_stride(h ? stride : 0) {}
  uint64_t operator[](size_t w) const { return lo[w * lo_stride] & ~hi[w * hi_stride]; }
  static constexpr uint64_t kOnes = ~uint64_t{0}, kNone = 0;
};

__attribute__((target("bmi2"))) uint64_t deposit_bmi2(ClassWords m, size_t words,
                                                      const uint64_t* bitmap, uint64_t seen,
                                                      uint64_t* chg) {
  for (size_t w = 0; w < words; ++w) {
    const uint64_t mw = m[w];
    chg[w] |= _pdep_u64(bits_from(bitmap, seen), mw);  // takes the low popcount(mw) bits
    seen += static_cast<uint64_t>(__builtin_popcountll(mw));
  }
  return seen;
}

uint64_t deposit_portable(ClassWords m, size_t words, const uint64_t* bitmap, uint64_t seen,
                          uint64_t* chg) {
  for (size_t w = 0; w < words; ++w) {
    const uint64_t mw = m[w];
    chg[w] |= pdep_portable(bits_from(bitmap, seen), mw);
    seen += static_cast<uint64_t>(__builtin_popcountll(mw));
  }
  return seen;
}

template <unsigned K>
__attribute__((target("bmi2"))) void deposit_all_bmi2(const uint64_t* ge, size_t words,
                                                      const uint64_t* const* bitmaps,
                                                      uint64_t* seen_io, const bool* live,
                                                      uint64_t* chg) {
  uint64_t seen[K], step[K];  // step: all ones for a live class, else zero
  for (unsigned k = 0; k < K; ++k) seen[k] = seen_io[k], step[k] = live[k] ? ~uint64_t{0} : 0;
  for (size_t w = 0; w < words; ++w, ge += K - 1) {
    uint64_t above = ~uint64_t{0}, acc = 0;  // above: members of class >= k
    for (unsigned k = 0; k < K; ++k) {
      const uint64_t next = k + 1 < K ? ge[k] : 0;
      const uint64_t m = above & ~next;
      above = next;
      acc |= _pdep_u64(bits_from(bitmaps[k], seen[k]), m);
      seen[k] += static_cast<uint64_t>(__builtin_popcountll(m)) & step[k];
    }
    chg[w] |= acc;
  }
  for (unsigned k = 0; k < K; ++k) seen_io[k] = seen[k];
}

// Eight positions per word from a ctz loop, more only for denser words.
size_t flatten_portable(const uint64_t* masks, size_t words, uint32_t offset, uint32_t* out) {
  const uint32_t* begin = out;
  for (size_t w = 0; w < words; ++w, offset += 64) {
    uint64_t m = masks[w];
    const unsigned cnt = static_cast<unsigned>(__builtin_popcountll(m));
    constexpr uint64_t kTop = uint64_t{1} << 63;  // keeps ctz defined when m runs out
    for (unsigned at = 0; at == 0 || at < cnt; at += 8)
      for (unsigned u = 0; u < 8; ++u) {
        out[at + u] = offset + static_cast<uint32_t>(__builtin_ctzll(m | kTop));
        m &= m - 1;
      }
    out += cnt;
  }
  return static_cast<size_t>(out - begin);
}

// out[0..16) = the sixteen bytes, widened, plus off.
__attribute__((target("avx512f"), always_inline)) inline void put16(uint32_t* out, __m128i sixteen,
                                                                    __m512i off) {
  _mm512_storeu_si512(out, _mm512_add_epi32(_mm512_maskz_cvtepu8_epi32(0xffff, sixteen), off));
}

// The set bits' indices compressed into bytes (VBMI2), widened to 32 bits
// sixteen at a time: no loop runs along a word's bits.
__attribute__((target("avx512f,avx512bw,avx512vbmi2"))) size_t flatten_avx512(const uint64_t* masks,
                                                                              size_t words,
                                                                              uint32_t offset,
                                                                              uint32_t* out) {
  const uint32_t* begin = out;
  const __m512i iota = _mm512_set_epi8(
      63, 62, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41,
      40, 39, 38, 37, 36, 35, 34, 33, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18,
      17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  for (size_t w = 0; w < words; ++w, offset += 64) {
    const uint64_t m = masks[w];
    const unsigned cnt = static_cast<unsigned>(__builtin_popcountll(m));
    const __m512i at = _mm512_maskz_compress_epi8(_cvtu64_mask64(m), iota);
    const __m512i off = _mm512_set1_epi32(static_cast<int>(offset));
    put16(out, _mm512_maskz_extracti32x4_epi32(0xf, at, 0), off);
    if (cnt > 16) {  // rare on sparse chunks
      put16(out + 16, _mm512_maskz_extracti32x4_epi32(0xf, at, 1), off);
      put16(out + 32, _mm512_maskz_extracti32x4_epi32(0xf, at, 2), off);
      put16(out + 48, _mm512_maskz_extracti32x4_epi32(0xf, at, 3), off);
    }
    out += cnt;
  }
  return static_cast<size_t>(out - begin);
}

}  // namespace

Isa best_isa() {
  static const Isa isa = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vbmi2") &&
        __builtin_cpu_supports("bmi2"))
      return Isa::Avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2")) return Isa::Avx2;
    return Isa::Portable;
  }();
  return isa;
}

void le_masks(const std::byte* data, size_t words, size_t esize, ExponentField f,
              const int16_t* thr, unsigned count, uint64_t* ge, Isa isa) {
  switch (esize) {
    case 1:
      return le_masks_sse2<uint8_t>(data, words, f, thr, count, ge);
    case 2:
      if (isa == Isa::Avx512) return le_masks_avx512_16(data, words, f, thr, count, ge);
      if (isa == Isa::Avx2) return le_masks_avx2_16(data, words, f, thr, count, ge);
      return le_masks_sse2<uint16_t>(data, words, f, thr, count, ge);
    case 4:
      return le_masks_sse2<uint32_t>(data, words, f, thr, count, ge);
    default:
      return le_masks_sse2<uint64_t>(data, words, f, thr, count, ge);
  }
}

uint64_t change_masks_top(const std::byte* a, const std::byte* b, size_t elements, size_t esize,
                          ExponentField f, uint64_t* out, unsigned& top) {
  if (esize == 2 && best_isa() != Isa::Portable)
    return change_masks_top_avx2_16(a, b, elements, f, out, top);
  const uint64_t total = change_masks(a, b, elements, esize, out);
  if (f.bits) top = std::max(top, max_exponent(a, elements, esize, f));
  return total;
}

uint64_t change_masks(const std::byte* a, const std::byte* b, size_t elements, size_t esize,
                      uint64_t* out) {
  switch (esize) {
    case 1:
      return change_masks_t<uint8_t>(a, b, elements, out);
    case 2:
      return change_masks_t<uint16_t>(a, b, elements, out);
    case 4:
      return change_masks_t<uint32_t>(a, b, elements, out);
    default:
      return change_masks_t<uint64_t>(a, b, elements, out);
  }
}

unsigned max_exponent(const std::byte* data, size_t elements, size_t esize, ExponentField f) {
  if (f.bits == 0) return 0;
  if (esize == 2) return max_exponent_16(data, elements, f);
  switch (esize) {
    case 1:
      return max_exponent_t<uint8_t>(data, elements, f);
    case 2:
      return max_exponent_t<uint16_t>(data, elements, f);
    case 4:
      return max_exponent_t<uint32_t>(data, elements, f);
    default:
      return max_exponent_t<uint64_t>(data, elements, f);
  }
}

uint64_t deposit_class_bits(const uint64_t* lo, const uint64_t* hi, size_t stride, size_t words,
                            const uint64_t* bitmap, uint64_t seen, uint64_t* chg, Isa isa) {
  const ClassWords m(lo, hi, stride);
  if (isa != Isa::Portable) return deposit_bmi2(m, words, bitmap, seen, chg);
  return deposit_portable(m, words, bitmap, seen, chg);
}

size_t flatten_bits(const uint64_t* masks, size_t words, uint32_t offset, uint32_t* out, Isa isa) {
  if (isa == Isa::Avx512) return flatten_avx512(masks, words, offset, out);
  return flatten_portable(masks, words, offset, out);
}

bool deposit_all_classes(const uint64_t* ge, unsigned classes, size_t words,
                         const uint64_t* const* bitmaps, uint64_t* seen, const bool* live,
                         uint64_t* chg, Isa isa) {
  if (isa == Isa::Portable) return false;
  using Fn =
      void (*)(const uint64_t*, size_t, const uint64_t* const*, uint64_t*, const bool*, uint64_t*);
  static constexpr Fn kByClasses[] = {nullptr,
                                      nullptr,
                                      deposit_all_bmi2<2>,
                                      deposit_all_bmi2<3>,
                                      deposit_all_bmi2<4>,
                                      deposit_all_bmi2<5>,
                                      deposit_all_bmi2<6>,
                                      deposit_all_bmi2<7>,
                                      deposit_all_bmi2<8>,
                                      deposit_all_bmi2<9>,
                                      deposit_all_bmi2<10>,
                                      deposit_all_bmi2<11>,
                                      deposit_all_bmi2<12>};
  if (classes < 2 || classes >= std::size(kByClasses)) return false;
  kByClasses[classes](ge, words, bitmaps, seen, live, chg);
  return true;
}

}  // namespace flare::delta
