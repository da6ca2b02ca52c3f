#pragma once
// flare-delta-v1: lossless deltas between two checkpoints (sets of named
// tensors). Bit patterns are compared, never float values, so every dtype,
// -0/+0 and NaN payloads round-trip exactly. The byte layout is documented in
// host/delta/FORMAT.md.
//
// Errors are flare::Error (a std::runtime_error) with codes:
//   "invalid_safetensors"  a checkpoint file is malformed (names tensor + field)
//   "invalid_delta"        the delta is truncated, corrupt or not a delta
//   "base_mismatch"        the delta was made against a different base
//   "checksum_mismatch"    a reconstructed tensor does not match its Adler-32
//   "io"                   the file system refused a read or write
// apply never publishes output when it throws.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "delta/safetensors.hpp"

namespace flare::delta {

inline constexpr std::string_view kFormatName = "flare-delta-v1";
inline constexpr uint32_t kFormatVersion = 1;

// Throws flare::Error{"invalid_argument"} naming the valid range for a zstd
// level outside it (encode checks its options with it; a CLI may check early).
void check_zstd_level(int level);

struct EncodeOptions {
  int zstd_level = 1;                 // level for the entropy-coded streams: 1..ZSTD_maxCLevel()
  unsigned threads = 0;               // 0 = all cores
  uint64_t chunk_elements = 1 << 20;  // elements per independently coded chunk
  std::string base_identity;          // recorded in the delta (e.g. the base snapshot's name)
  // Exponent classes used as context for sparse chunks (1..64; 1 = no context)
  // and exponent values per class: more classes code training steps smaller,
  // fewer decode faster. 0 chooses per chunk by how many elements changed:
  // 6 classes of 2 exponents below 10%, 12 of 1 from 10% on, where the finer
  // context saves more than it costs (class_width is then not used).
  unsigned context_classes = 0;
  unsigned class_width = 2;
};

struct ApplyOptions {
  unsigned threads = 0;  // 0 = all cores
  // When set, the delta's recorded base identity must equal it.
  std::optional<std::string> expect_base_identity;
};

// How one tensor differs between base and next.
enum class TensorChange : uint8_t { Unchanged, Modified, Added, Removed, Retyped };
std::string_view change_name(TensorChange c);  // "unchanged", "modified", ...

// How one chunk's bytes are stored.
enum class ChunkEncoding : uint8_t {
  Same = 0,
  Sparse = 1,
  Dense = 2,
  Raw = 3,
  Full = 4,
  Classed = 5
};
inline constexpr size_t kChunkEncodings = 6;
// "same", "sparse", "dense", "raw", "full", "classed"
std::string_view encoding_name(ChunkEncoding e);
// The chunk is coded against a base chunk of the same dtype and shape, and
// its record's changed count is checked against what its payload changes.
inline bool codes_against_base(ChunkEncoding e) {
  return e == ChunkEncoding::Same || e == ChunkEncoding::Sparse || e == ChunkEncoding::Dense ||
         e == ChunkEncoding::Classed;
}

struct TensorDeltaInfo {
  std::string name;
  TensorChange change = TensorChange::Unchanged;
  DType dtype = DType::U8;          // next's dtype (base's for a removed tensor)
  Shape shape;                      // next's shape (base's for a removed tensor)
  std::optional<DType> base_dtype;  // absent for an added tensor
  std::optional<Shape> base_shape;
  uint64_t elements = 0;
  uint64_t bytes = 0;             // next's data size
  uint64_t stored_bytes = 0;      // bytes of delta payload for this tensor
  uint64_t changed_elements = 0;  // elements whose bit pattern differs from base
  double density = 0;             // changed_elements / elements
  uint32_t base_adler32 = 0;      // Adler-32 of the base tensor's bytes
  uint32_t adler32 = 0;           // Adler-32 of the reconstructed tensor's bytes
  // Chunk counts per ChunkEncoding (indexed by its value).
  uint64_t chunks[kChunkEncodings] = {};
  std::string encoding;  // the encoding of most stored bytes: "same", "sparse", ...
};

struct DeltaInfo {
  std::string format;  // kFormatName
  uint32_t version = 0;
  std::string base_identity;
  uint32_t base_digest = 0;  // Adler-32 over the base's tensor directory and checksums
  uint64_t base_tensor_bytes = 0;
  uint64_t next_tensor_bytes = 0;
  uint64_t delta_bytes = 0;              // size of the whole delta
  Metadata metadata;                     // next's __metadata__
  std::vector<TensorDeltaInfo> tensors;  // next's tensors in name order, then removed ones
  double ratio() const {
    return delta_bytes ? static_cast<double>(next_tensor_bytes) / delta_bytes : 0;
  }
};

// --- whole files -----------------------------------------------------------

// Encodes the delta base -> next and writes it to `out` (temp name + rename).
DeltaInfo encode_files(const std::string& base, const std::string& next, const std::string& out,
                       const EncodeOptions& opts = {});

// Reconstructs next from base + delta into `out` (temp name + rename), checking
// the base's and every output tensor's Adler-32 first. Streams: resident memory
// stays near the output size.
DeltaInfo apply_files(const std::string& base, const std::string& delta, const std::string& out,
                      const ApplyOptions& opts = {});

// Parses and validates a delta's header and checksums without a base.
DeltaInfo inspect_file(const std::string& delta);

// Checks that applying `delta` to `base` gives exactly the tensors and metadata
// of `next`; throws (naming the first difference) when it does not.
DeltaInfo verify_files(const std::string& base, const std::string& delta, const std::string& next,
                       const ApplyOptions& opts = {});

// --- in memory -------------------------------------------------------------

std::vector<std::byte> encode(std::span<const TensorView> base, std::span<const TensorView> next,
                              const Metadata& next_metadata = {}, const EncodeOptions& opts = {});

struct Checkpoint {
  std::vector<Tensor> tensors;  // in name order
  Metadata metadata;
};
Checkpoint apply(std::span<const TensorView> base, std::span<const std::byte> delta,
                 const ApplyOptions& opts = {});

// A caller-owned buffer for one reconstructed tensor.
struct OutputTensor {
  std::string name;
  DType dtype = DType::U8;
  Shape shape;
  std::span<std::byte> data;
};

// Reconstructs next into caller-owned buffers, one per tensor of next (any order), each with
// next's name, dtype and shape (inspect() lists them). Buffers kept across applies (a serving
// process's standby copy of the weights) skip the page faults of fresh memory. Every tensor is
// verified as it is written; on error the buffers hold partial data and must not be used.
// Returns next's metadata.
Metadata apply_into(std::span<const TensorView> base, std::span<const std::byte> delta,
                    std::span<const OutputTensor> out, const ApplyOptions& opts = {});

DeltaInfo inspect(std::span<const std::byte> delta);

}  // namespace flare::delta
