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
  int zstd_level = 3;
  unsigned classes = 6;      // exponent classes for sparse positions (1 = no context)
  unsigned class_width = 2;  // exponent values per class
};

struct EncodedChunk {
  ChunkEncoding encoding = ChunkEncoding::Same;
  std::vector<std::byte> payload;
  uint64_t changed = 0;  // elements whose bit pattern differs from base
};

// `base` is empty when next has no base of the same dtype and shape (then the
// chunk is stored whole: raw or full).
EncodedChunk encode_chunk(DType dtype, std::span<const std::byte> base,
                          std::span<const std::byte> next, const ChunkParams& params);

// Writes the chunk's reconstructed bytes into `out` (same size as the chunk;
// `base` as given to encode_chunk). Returns the number of changed elements the
// payload describes (the element count for raw/full chunks).
uint64_t decode_chunk(DType dtype, ChunkEncoding encoding, std::span<const std::byte> payload,
                      std::span<const std::byte> base, std::span<std::byte> out);

}  // namespace flare::delta
