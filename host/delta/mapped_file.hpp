#pragma once
// A file mapped read-only. release() drops pages already read from this
// process's resident set, so a pass over a large file keeps resident memory
// small (the page cache keeps them for the next reader).
#include <cstddef>
#include <span>
#include <string>

namespace flare::delta {

class MappedFile {
 public:
  MappedFile() = default;
  // Throws flare::Error{"io"} naming the path.
  static MappedFile open(const std::string& path);
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const std::byte> bytes() const { return {static_cast<const std::byte*>(addr_), size_}; }
  // The pages of `range` (a subspan of bytes()) and of the 64 KB windows around
  // its ends leave the resident set; reading them again maps them again.
  void release(std::span<const std::byte> range) const;

 private:
  void* addr_ = nullptr;
  size_t size_ = 0;
};

}  // namespace flare::delta
