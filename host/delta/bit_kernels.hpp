#pragma once
// Word-at-a-time kernels used by the chunk codec: which elements differ between
// two arrays, the largest exponent of an array, the exponent-class masks of 64
// elements, a class's changed elements deposited onto its members, the
// positions of a mask's set bits, and a cache-bypassing copy. Masks hold one
// bit per element, 64 elements per word, bit j of word w = element 64*w + j.
#include <emmintrin.h>

#include <algorithm>
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

// Instruction sets the kernels below have a path for; every path gives the
// same result (the tests compare them).
enum class Isa { Portable, Avx2, Avx512 };
Isa best_isa();  // the widest this CPU runs (Avx2 includes BMI2, Avx512 BW and VBMI2)

// ge[w * count + t] bit j = (exponent of element 64w + j of `data`) <= thr[t],
// for `words` whole words and t < count (at most 63).
void le_masks(const std::byte* data, size_t words, size_t esize, ExponentField f,
              const int16_t* thr, unsigned count, uint64_t* ge, Isa isa = best_isa());

// Maps one exponent class's changed element numbers to positions, a block of
// words at a time. For word w the class's members are
// m_w = (lo ? lo[w * stride] : ~0) & ~(hi ? hi[w * stride] : 0) (lo, hi: the
// nested "class >= k" and "class >= k + 1" masks); the next popcount(m_w) bits
// of `bitmap` from bit `seen` (bit r set: the class's element r changed) are
// deposited onto m_w and ORed into chg[w]. Returns `seen` advanced past the
// words' members. `bitmap` must be readable one word past the last bit read.
// With BMI2 (pdep), no branch depends on the data.
uint64_t deposit_class_bits(const uint64_t* lo, const uint64_t* hi, size_t stride, size_t words,
                            const uint64_t* bitmap, uint64_t seen, uint64_t* chg,
                            Isa isa = best_isa());

// deposit_class_bits for every class of a block in one walk over its words,
// for 2 to 12 classes (ge: the K - 1 masks "class >= 1..K-1" of each word,
// as le_masks writes them). Class k reads bitmaps[k] from seen[k] on and
// advances seen[k] only where live[k] is set; a class that is not live must
// have zero bits at seen[k] (its bitmap ended, or it has none). Returns false,
// doing nothing, for another number of classes or without BMI2.
bool deposit_all_classes(const uint64_t* ge, unsigned classes, size_t words,
                         const uint64_t* const* bitmaps, uint64_t* seen, const bool* live,
                         uint64_t* chg, Isa isa = best_isa());

// Appends the positions (offset + 64 w + bit) of the set bits of
// masks[0..words) to out, which needs 64 entries of slack, and returns their
// number. A word's positions are written in one go whatever its count (the
// next word overwrites the surplus), so a sparse word costs no branch.
size_t flatten_bits(const uint64_t* masks, size_t words, uint32_t offset, uint32_t* out,
                    Isa isa = best_isa());

// memcpy with non-temporal stores where dst is 16-byte aligned: the copy goes
// to memory without first reading dst's lines into the cache. Call
// stream_fence() before another thread may read dst.
inline void stream_copy(std::byte* dst, const std::byte* src, size_t len) {
  const size_t head = std::min(len, (16 - reinterpret_cast<uintptr_t>(dst) % 16) % 16);
  std::memcpy(dst, src, head);
  size_t at = head;
  for (; at + 64 <= len; at += 64)
    for (int q = 0; q < 4; ++q)
      _mm_stream_si128(reinterpret_cast<__m128i*>(dst + at) + q,
                       _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + at) + q));
  std::memcpy(dst + at, src + at, len - at);
}
inline void stream_fence() {
  _mm_sfence();
}

}  // namespace flare::delta
