#pragma once
// The container of flare-delta-v1 (see FORMAT.md): a 40-byte prefix, a JSON
// directory of tensors and chunks, and the chunk payloads.
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "delta/codec.hpp"

namespace flare::delta {

inline constexpr char kMagic[8] = {'F', 'L', 'R', 'D', 'E', 'L', 'T', 'A'};
inline constexpr size_t kPrefixBytes = 40;
inline constexpr uint64_t kMaxChunkElements = uint64_t{1} << 24;
inline constexpr uint64_t kMaxDeltaHeaderBytes = 1ull << 30;

struct ChunkRecord {
  ChunkEncoding encoding = ChunkEncoding::Same;
  uint64_t offset = 0;  // within the payload
  uint64_t length = 0;
  uint32_t base_adler32 = 0;  // of the base chunk (0 when there is no base chunk)
  uint32_t adler32 = 0;       // of the reconstructed chunk
  uint64_t changed = 0;
};

struct TensorRecord {
  std::string name;
  TensorChange change = TensorChange::Unchanged;
  DType dtype = DType::U8;  // next's (unused for removed)
  Shape shape;
  std::optional<DType> base_dtype;  // absent for added
  std::optional<Shape> base_shape;
  uint32_t base_adler32 = 0;
  uint32_t adler32 = 0;
  std::vector<ChunkRecord> chunks;

  bool has_next() const { return change != TensorChange::Removed; }
  bool has_base() const { return change != TensorChange::Added; }
  // Base chunks line up with next's chunks (same dtype and shape).
  bool chunked_base() const {
    return change == TensorChange::Modified || change == TensorChange::Unchanged;
  }
  uint64_t next_bytes() const { return has_next() ? element_count(shape) * dtype_size(dtype) : 0; }
};

struct DeltaHeader {
  std::string base_identity;
  uint32_t base_digest = 0;
  uint64_t chunk_elements = 0;
  Metadata metadata;
  std::vector<TensorRecord> tensors;
};

// Adler-32 of the base's directory: "name\tDTYPE\t[d0,d1,...]\t<adler32>\n"
// for every tensor with a base, in name order.
uint32_t base_digest(const std::vector<TensorRecord>& tensors);

// Prefix + JSON header for a payload of `payload_bytes` bytes whose Adler-32 is `payload_adler`.
std::vector<std::byte> delta_preamble(const DeltaHeader& h, uint64_t payload_bytes,
                                      uint32_t payload_adler);

struct ParsedDelta {
  DeltaHeader header;
  std::span<const std::byte> payload;
  uint64_t total_bytes = 0;
};

// Validates everything that can be checked without the base; throws
// flare::Error{"invalid_delta"} naming the field or byte offset. With
// `release`, the payload is checksummed in pieces, each handed to it once
// summed (a mapped file's pages leave the resident set).
ParsedDelta parse_delta(std::span<const std::byte> bytes,
                        const std::function<void(std::span<const std::byte>)>& release = {});

DeltaInfo describe(const ParsedDelta& d);

}  // namespace flare::delta
