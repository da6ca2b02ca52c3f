#pragma once
// Kernels of the `classed` chunk encoding (FORMAT.md): every element's
// z = zigzag(next - base) goes to the byte planes of its exponent class (from
// its base value), in position order within the class; no positions are
// stored. split_class_planes writes the planes, merge_class_planes reads them
// back onto the base.
#include <cstddef>
#include <cstdint>

#include "delta/bit_kernels.hpp"

namespace flare::delta {

// class = min(K - 1, (top - e) / W) for exponent field e <= top, else 0.
struct ClassRule {
  ClassRule(ExponentField f, unsigned classes, unsigned width, unsigned top);
  ExponentField field;
  unsigned classes, width, top;
  uint8_t of_exponent[2048];  // class of each exponent field value
};

// For the `elements` elements (esize bytes each) of base and next: byte q of
// each element's z is written to planes[k * esize + q][at[k]] and at[k] then
// advances, k the element's class. Each plane must have room for 64 bytes
// past the class's last member. Returns the number of elements with z != 0.
uint64_t split_class_planes(const std::byte* base, const std::byte* next, size_t elements,
                            size_t esize, const ClassRule& rule, std::byte* const* planes,
                            uint64_t* at, Isa isa = best_isa());

// out[i] = base[i] + unzigzag(z) with z read as split_class_planes wrote it;
// out may equal base. Class k's planes hold members[k] values; every class's
// planes, members or not, must be readable 64 bytes past members[k]. Returns
// false when a class has more members than members[k] (out and at are then
// partly written); else adds the number of elements with z != 0 to *changed.
bool merge_class_planes(const std::byte* base, std::byte* out, size_t elements, size_t esize,
                        const ClassRule& rule, const std::byte* const* planes, uint64_t* at,
                        const uint64_t* members, uint64_t* changed, Isa isa = best_isa());

}  // namespace flare::delta
