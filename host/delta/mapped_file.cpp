#include "delta/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "runtime/file_io.hpp"

namespace flare::delta {

MappedFile MappedFile::open(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) throw_io("cannot open " + path);
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) throw_io("cannot stat " + path);
  MappedFile f;
  const size_t size = static_cast<size_t>(st.st_size);
  if (size > 0) {
    void* addr = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd.get(), 0);
    if (addr == MAP_FAILED) throw_io("cannot map " + path);
    f.addr_ = addr;
    f.size_ = size;
  }
  return f;
}

MappedFile::MappedFile(MappedFile&& o) noexcept
    : addr_(std::exchange(o.addr_, nullptr)), size_(std::exchange(o.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    if (addr_) munmap(addr_, size_);
    addr_ = std::exchange(o.addr_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (addr_) munmap(addr_, size_);
}

void MappedFile::release(std::span<const std::byte> range) const {
  if (!addr_ || range.empty()) return;
  // Rounded out to the 64 KB windows the kernel maps around a faulting page
  // (fault-around): else the pages it mapped past a range's ends, into ranges
  // released before, stayed resident (about 64 KB per chunk, 25 MB over a
  // 570 MB checkpoint). Dropping a page another thread still reads is safe:
  // the mapping is shared and read-only, so its next read maps it again from
  // the page cache.
  constexpr uintptr_t kWindow = uintptr_t{64} << 10;
  const uintptr_t lo = reinterpret_cast<uintptr_t>(addr_);
  const uintptr_t hi = lo + size_;
  uintptr_t begin = reinterpret_cast<uintptr_t>(range.data()) & ~(kWindow - 1);
  uintptr_t end =
      (reinterpret_cast<uintptr_t>(range.data()) + range.size() + kWindow - 1) & ~(kWindow - 1);
  begin = std::max(begin, lo);  // the mapping starts on a page boundary
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  end = std::min(end, (hi + page - 1) & ~(page - 1));
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

}  // namespace flare::delta
