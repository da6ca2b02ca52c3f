#pragma once
// Coding of one chunk (a run of up to EncodeOptions::chunk_elements elements of
// one tensor). The payload layouts are described in FORMAT.md; decode errors
// are std::runtime_error whose message the caller prefixes with the tensor and
// chunk.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "delta/codec.hpp"

namespace flare::delta {

struct ChunkParams {
  int zstd_level = 1;
  unsigned classes = 6;  // exponent classes for sparse positions (1 = no context, 0 = by density)
  unsigned class_width = 2;  // exponent values per class
};

struct EncodedChunk {
  ChunkEncoding encoding = ChunkEncoding::Same;
  std::vector<std::byte> payload;
  uint64_t changed = 0;       // elements whose bit pattern differs from base
  uint32_t base_adler32 = 1;  // Adler-32 of base (1 when there is none)
  uint32_t next_adler32 = 1;  // Adler-32 of next
};

// `base` is empty when next has no base of the same dtype and shape (then the
// chunk is stored whole: raw or full). The chunk is read in cache-sized blocks
// that are checksummed, compared and scanned while they are in cache.
EncodedChunk encode_chunk(DType dtype, std::span<const std::byte> base,
                          std::span<const std::byte> next, const ChunkParams& params);

// Adler-32s of a decoded chunk's base and output. Where the output is a
// one-to-one function of the base given the payload (same, sparse, dense), a
// wrong base shows in the output's sum, and the decoder may leave the base's
// unsummed (base_summed false) for the caller to take when the output's sum
// or change count disagrees, to name the cause.
struct ChunkSums {
  uint32_t base = 1, out = 1;
  bool base_summed = true;
};

// What becomes of a decoded chunk: Kept where it is (a serving process's
// weights; written with non-temporal stores, which skip reading out's lines
// into the cache) or Reread right away (copied to a file, compared; ordinary
// stores leave it in the cache for that).
enum class OutputUse { Kept, Reread };

// Writes the chunk's reconstructed bytes into `out` (same size as the chunk;
// `base` as given to encode_chunk). Returns the number of changed elements the
// payload describes (the element count for raw/full chunks). With `sums`, also
// the Adler-32s of base and out, taken block by block while they are in cache.
uint64_t decode_chunk(DType dtype, ChunkEncoding encoding, std::span<const std::byte> payload,
                      std::span<const std::byte> base, std::span<std::byte> out,
                      ChunkSums* sums = nullptr, OutputUse use = OutputUse::Reread);

}  // namespace flare::delta
