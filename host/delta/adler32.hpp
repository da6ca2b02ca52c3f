#pragma once
// Adler-32 (RFC 1950) over byte spans. The sums come from ISA-L's isal_adler32;
// large buffers are split into chunks summed on the thread pool and joined with
// zlib's adler32_combine, so the result equals zlib's adler32 of the whole span.
#include <cstddef>
#include <cstdint>
#include <span>

namespace flare::delta {

inline constexpr uint32_t kAdler32Init = 1;

// Adler-32 of `data`, continuing from `seed` (kAdler32Init for a fresh sum). One thread.
uint32_t adler32(std::span<const std::byte> data, uint32_t seed = kAdler32Init);

// The Adler-32 of A||B given adler32(A), adler32(B) and B's length.
uint32_t adler32_combine(uint32_t adler_a, uint32_t adler_b, uint64_t length_b);

// Adler-32 of `data` summed on up to `threads` threads (0 = the shared pool's size).
uint32_t adler32_parallel(std::span<const std::byte> data, unsigned threads = 0);

}  // namespace flare::delta
