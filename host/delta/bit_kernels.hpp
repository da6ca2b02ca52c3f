#pragma once
// Word-at-a-time scans used by the chunk codec: which elements differ between
// two arrays, the exponent class of every element, and which elements of a
// class array equal a given class. Masks hold one bit per element, 64 elements
// per word, bit j of word w = element 64*w + j.
#include <emmintrin.h>

#include <cstddef>
#include <cstdint>
#include <span>

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

// cls[i] = class of element i: top - exponent, divided by `width`, clamped to
// [0, classes-1]; exponents above top (Inf/NaN) are class 0.
void exponent_classes(const std::byte* data, size_t elements, size_t esize, ExponentField f,
                      unsigned top, unsigned width, unsigned classes, uint8_t* cls);

// Mask of the 64 class bytes at `cls` equal to k.
inline uint64_t class_mask64(const uint8_t* cls, uint8_t k) {
  const __m128i key = _mm_set1_epi8(static_cast<char>(k));
  uint64_t m = 0;
  for (int q = 0; q < 4; ++q) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cls) + q);
    m |= static_cast<uint64_t>(static_cast<uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, key))))
         << (16 * q);
  }
  return m;
}

// Bit planes of 64 class bytes: bit j of planes[b] = bit b of cls[j], for b < nb.
inline void class_planes64(const uint8_t* cls, unsigned nb, uint64_t* planes) {
  for (unsigned b = 0; b < nb; ++b) planes[b] = 0;
  for (int q = 0; q < 4; ++q) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(cls) + q);
    for (unsigned b = 0; b < nb; ++b) {
      // Shifting 16-bit lanes left by 7-b brings bit b of both bytes to their top bit.
      const __m128i t = _mm_sll_epi16(v, _mm_cvtsi32_si128(static_cast<int>(7 - b)));
      planes[b] |= static_cast<uint64_t>(static_cast<uint32_t>(_mm_movemask_epi8(t))) << (16 * q);
    }
  }
}

// Mask of the elements of class k, from the planes of class_planes64.
inline uint64_t class_member(const uint64_t* planes, unsigned nb, unsigned k) {
  uint64_t m = ~uint64_t{0};
  for (unsigned b = 0; b < nb; ++b) m &= ((k >> b) & 1) ? planes[b] : ~planes[b];
  return m;
}

}  // namespace flare::delta
