#pragma once
// Word-at-a-time scans used by the chunk codec: which elements differ between
// two arrays, the exponent class of every element, and which elements of a
// class array equal a given class. Masks hold one bit per element, 64 elements
// per word, bit j of word w = element 64*w + j.
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
uint64_t class_mask64(const uint8_t* cls, uint8_t k);

}  // namespace flare::delta
