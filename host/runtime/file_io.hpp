#pragma once
// Small POSIX file helpers: whole-file reads and writes that replace a file
// atomically (the delta codec, safetensors, the emulator's bucket).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace flare {

// Throws flare::Error{"io"} with `what` and strerror(errno).
[[noreturn]] void throw_io(const std::string& what);

class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  UniqueFd& operator=(UniqueFd&& o) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

// Reads a whole file into memory.
std::vector<std::byte> read_file(const std::string& path);

// A file written under a temporary name next to `path` and renamed onto it by
// commit(). Destroying it without commit() removes the temporary file.
class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write_at(uint64_t offset, std::span<const std::byte> bytes);  // thread-safe (pwrite)
  // Sizes the file with its blocks allocated up front: writing into allocated
  // blocks is much cheaper than into a hole (ext4, xfs), and a full disk shows
  // here rather than midway. A plain resize where the filesystem cannot.
  void reserve(uint64_t size);
  // durable: the file's data is on disk before the rename and the rename before
  // commit returns (fsync of the file and of its directory).
  void commit(bool durable = false);
  const std::string& temp_path() const { return temp_; }

 private:
  std::string path_, temp_;
  UniqueFd fd_;
  bool committed_ = false;
  int slot_ = -1;  // in the table remove_temp_files_on_signal() reads
};

// For a program whose SIGINT and SIGTERM would otherwise end it on the spot:
// installs handlers that remove the temporary file of every AtomicFile not yet
// committed, then end the process by the same signal.
void remove_temp_files_on_signal();

// Writes `bytes` to a temporary file next to `path` and renames it onto `path`.
void write_file_atomic(const std::string& path, std::span<const std::byte> bytes,
                       bool durable = false);

}  // namespace flare
