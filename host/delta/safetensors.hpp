#pragma once
// safetensors I/O: an 8-byte little-endian header length N, N bytes of JSON
// ({"__metadata__": {str: str}, "<name>": {"dtype", "shape", "data_offsets"}}),
// padded with spaces to a multiple of 8, then the tensor bytes. The reader
// validates the whole header before handing out any view; the writer produces
// the layout of the reference implementation (largest dtype first, then by
// name, so every tensor is aligned to its element size) and publishes files by writing a temporary
// name and renaming it.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace flare::delta {

enum class DType : uint8_t {
  F64,
  F32,
  F16,
  BF16,
  F8_E4M3,
  F8_E5M2,
  I64,
  I32,
  I16,
  I8,
  U8,
  BOOL,
  U64,
  U32,
  U16,
  F8_E8M0
};

size_t dtype_size(DType d);                                // bytes per element
std::string_view dtype_name(DType d);                      // "BF16", ...
std::optional<DType> dtype_from_name(std::string_view s);  // nullopt when unknown

using Shape = std::vector<uint64_t>;
using Metadata = std::map<std::string, std::string>;

// Number of elements of `shape`; throws std::runtime_error on overflow past 2^62.
uint64_t element_count(const Shape& shape);

// A tensor whose bytes live elsewhere (a mapped file, a caller's buffer).
struct TensorView {
  std::string name;
  DType dtype = DType::U8;
  Shape shape;
  std::span<const std::byte> data;
  uint64_t elements() const { return element_count(shape); }
};

// A tensor that owns its bytes.
struct Tensor {
  std::string name;
  DType dtype = DType::U8;
  Shape shape;
  std::vector<std::byte> data;
  TensorView view() const { return {name, dtype, shape, {data.data(), data.size()}}; }
};

// Largest header accepted by the reader (the reference implementation's cap).
inline constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// A parsed safetensors file. Views stay valid while the object lives; moving
// it keeps them valid.
class SafetensorsFile {
 public:
  // Memory-maps `path` read-only (zero copy) and validates it.
  static SafetensorsFile open(const std::string& path);
  // Validates bytes the caller keeps alive for the lifetime of the result.
  static SafetensorsFile view_bytes(std::span<const std::byte> bytes);
  // Takes ownership of `bytes`.
  static SafetensorsFile from_bytes(std::vector<std::byte> bytes);

  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  ~SafetensorsFile();

  // Tensors in file (data offset) order.
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find(std::string_view name) const;  // nullptr when absent
  const TensorView& at(std::string_view name) const;    // throws when absent
  const Metadata& metadata() const { return metadata_; }
  std::span<const std::byte> bytes() const { return bytes_; }
  uint64_t header_size() const { return header_size_; }  // 8 + N
  // Tells the kernel the mapped pages of `range` (a subspan of bytes()) are not
  // needed any more, so reading a large file does not grow resident memory.
  // No effect for in-memory files.
  void release(std::span<const std::byte> range) const;

 private:
  SafetensorsFile() = default;
  void parse();  // validates bytes_, fills tensors_ and metadata_

  struct Mapping;
  std::unique_ptr<Mapping> mapping_;  // file mapping, or owned bytes
  std::span<const std::byte> bytes_;
  uint64_t header_size_ = 0;
  std::vector<TensorView> tensors_;
  Metadata metadata_;
};

// A tensor's name, dtype and shape without its bytes.
struct TensorSpec {
  std::string name;
  DType dtype = DType::U8;
  Shape shape;
};

// The header (length prefix + padded JSON) for `tensors`, laid out largest
// dtype first, then by name; `offsets[i]` receives tensors[i]'s byte offset
// from the start of the file.
std::vector<std::byte> safetensors_header(std::span<const TensorSpec> tensors,
                                          const Metadata& metadata,
                                          std::vector<uint64_t>* offsets = nullptr);
// The same for tensors with data (whose sizes must match their shapes).
std::vector<std::byte> safetensors_header(std::span<const TensorView> tensors,
                                          const Metadata& metadata,
                                          std::vector<uint64_t>* offsets = nullptr);

// A whole safetensors file in memory.
std::vector<std::byte> serialize_safetensors(std::span<const TensorView> tensors,
                                             const Metadata& metadata = {});

// Writes `path` via "<path>.tmp-<pid>-<n>" + rename; on any failure the
// temporary file is removed and `path` is left untouched.
void write_safetensors(const std::string& path, std::span<const TensorView> tensors,
                       const Metadata& metadata = {});

}  // namespace flare::delta
