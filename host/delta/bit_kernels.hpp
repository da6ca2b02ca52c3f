#pragma once
// Word-at-a-time scans used by the chunk codec: which elements differ between
// two arrays, the largest exponent of an array, and the exponent-class masks of
// 64 elements. Masks hold one bit per element, 64 elements per word, bit j of
// word w = element 64*w + j.
#include <emmintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace flare::delta {

// out[w] gets the change mask of elements [64w, 64w+64) of a vs b (element size
// `esize` in {1,2,4,8}); returns the number of differing elements. The last
// word's bits past `elements` are zero.
uint64_t change_masks(const std::byte* a, const std::byte* b, size_t elements, size_t esize,
                      uint64_t* out);

// The exponent field layout of a float dtype.
struct ExponentField {
  unsigned shift = 0;  // bit position of the field's lowest bit
  unsigned bits = 0;   // 0 for dtypes without an exponent (integers, bool)
};

// Largest exponent field value below all-ones (Inf/NaN) among the elements, or 0.
unsigned max_exponent(const std::byte* data, size_t elements, size_t esize, ExponentField f);

// change_masks, and in the same pass over `a`: top = max(top, max_exponent(a, ...))
// (top is left alone when f.bits is 0).
uint64_t change_masks_top(const std::byte* a, const std::byte* b, size_t elements, size_t esize,
                          ExponentField f, uint64_t* out, unsigned& top);

// Exponent fields (at most 11 bits) of the 64 elements of T at p, as 16-bit lanes.
template <typename T>
inline void exponents64(const std::byte* p, ExponentField f, __m128i* e) {
  const __m128i sh = _mm_cvtsi32_si128(static_cast<int>(f.shift));
  auto ld = [&](int i) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p) + i); };
  if constexpr (sizeof(T) == 2) {
    const __m128i mask = _mm_set1_epi16(static_cast<int16_t>((1 << f.bits) - 1));
    for (int q = 0; q < 8; ++q) e[q] = _mm_and_si128(_mm_srl_epi16(ld(q), sh), mask);
  } else if constexpr (sizeof(T) == 4) {
    const __m128i mask = _mm_set1_epi32((1 << f.bits) - 1);
    for (int q = 0; q < 8; ++q)
      e[q] = _mm_packs_epi32(_mm_and_si128(_mm_srl_epi32(ld(2 * q), sh), mask),
                             _mm_and_si128(_mm_srl_epi32(ld(2 * q + 1), sh), mask));
  } else if constexpr (sizeof(T) == 1) {
    const __m128i mask = _mm_set1_epi16(static_cast<int16_t>((1 << f.bits) - 1));
    for (int q = 0; q < 4; ++q) {
      const __m128i v = ld(q), zero = _mm_setzero_si128();
      e[2 * q] = _mm_and_si128(_mm_srl_epi16(_mm_unpacklo_epi8(v, zero), sh), mask);
      e[2 * q + 1] = _mm_and_si128(_mm_srl_epi16(_mm_unpackhi_epi8(v, zero), sh), mask);
    }
  } else {
    alignas(16) int16_t x[64];
    for (int j = 0; j < 64; ++j) {
      T v;
      std::memcpy(&v, p + j * sizeof(T), sizeof(T));
      x[j] = static_cast<int16_t>((v >> f.shift) & ((T{1} << f.bits) - 1));
    }
    for (int q = 0; q < 8; ++q) e[q] = _mm_load_si128(reinterpret_cast<const __m128i*>(x) + q);
  }
}

// out[t] bit j = e[j] <= thr[t], for t < count (signed 16-bit compares).
inline void le_masks64(const __m128i* e, const int16_t* thr, unsigned count, uint64_t* out) {
  for (unsigned t = 0; t < count; ++t) {
    const __m128i key = _mm_set1_epi16(thr[t]);
    uint64_t gt = 0;
    for (int q = 0; q < 4; ++q) {
      const __m128i g =
          _mm_packs_epi16(_mm_cmpgt_epi16(e[2 * q], key), _mm_cmpgt_epi16(e[2 * q + 1], key));
      gt |= static_cast<uint64_t>(static_cast<uint32_t>(_mm_movemask_epi8(g))) << (16 * q);
    }
    out[t] = ~gt;
  }
}

// ge[w * count + t] bit j = (exponent of element 64w + j of `data`) <= thr[t],
// for `words` whole words and t < count (at most 63). Uses AVX2 when the CPU has it.
void le_masks(const std::byte* data, size_t words, size_t esize, ExponentField f,
              const int16_t* thr, unsigned count, uint64_t* ge);

// kSelectInByte[r][x]: position of the r-th (from 0) set bit of byte x (8 when none).
struct SelectTable {
  uint8_t pos[8][256];
  constexpr SelectTable() : pos() {
    for (unsigned x = 0; x < 256; ++x) {
      for (unsigned r = 0; r < 8; ++r) pos[r][x] = 8;
      for (unsigned b = 0, c = 0; b < 8; ++b)
        if ((x >> b) & 1) pos[c++][x] = static_cast<uint8_t>(b);
    }
  }
};
inline constexpr SelectTable kSelectInByte{};

// Position of the r-th (from 0) set bit of x; x must have more than r bits set.
// Branch-free: byte popcounts, their prefix sums, the byte that holds the bit,
// then a table (the changed elements of a word are found at random ranks, so a
// loop here would mispredict on almost every call).
inline unsigned select64(uint64_t x, unsigned r) {
  constexpr uint64_t kOnes = 0x0101010101010101ull, kHigh = 0x8080808080808080ull;
  uint64_t s = x - ((x >> 1) & 0x5555555555555555ull);
  s = (s & 0x3333333333333333ull) + ((s >> 2) & 0x3333333333333333ull);
  s = (s + (s >> 4)) & 0x0f0f0f0f0f0f0f0full;
  const uint64_t prefix = s * kOnes;  // byte i: set bits in bytes 0..i
  // Bytes whose prefix is <= r come before the byte that holds the bit.
  const uint64_t le = ((r * kOnes) | kHigh) - prefix;
  const unsigned byte = static_cast<unsigned>(__builtin_popcountll(le & kHigh));
  const unsigned before = static_cast<unsigned>(((prefix << 8) >> (8 * byte)) & 0xff);
  return 8 * byte + kSelectInByte.pos[r - before][(x >> (8 * byte)) & 0xff];
}

}  // namespace flare::delta
