#include "runtime/file_io.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "runtime/error.hpp"

namespace flare {
namespace {

// Temporary paths of live AtomicFiles, readable from a signal handler: each
// slot points at a path owned by its AtomicFile, or is null.
constexpr int kTempSlots = 256;
std::atomic<const char*> g_temp_paths[kTempSlots];

int register_temp(const char* path) {
  for (int i = 0; i < kTempSlots; ++i) {
    const char* expected = nullptr;
    if (g_temp_paths[i].compare_exchange_strong(expected, path)) return i;
  }
  return -1;  // more files at once than slots: that one is not removed on a signal
}

void unregister_temp(int slot) {
  if (slot >= 0) g_temp_paths[slot].store(nullptr);
}

extern "C" void remove_temps_and_die(int signo) {
  for (auto& slot : g_temp_paths) {
    if (const char* path = slot.load()) ::unlink(path);
  }
  ::signal(signo, SIG_DFL);
  ::raise(signo);
}

}  // namespace

void remove_temp_files_on_signal() {
  struct sigaction sa {};
  sa.sa_handler = remove_temps_and_die;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

void throw_io(const std::string& what) {
  throw Error("io", what + ": " + std::strerror(errno));
}

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

std::vector<std::byte> read_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) throw_io("cannot open " + path);
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) throw_io("cannot stat " + path);
  std::vector<std::byte> out(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd.get(), out.data() + done, out.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_io("cannot read " + path);
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  return out;
}

AtomicFile::AtomicFile(const std::string& path) : path_(path) {
  static std::atomic<unsigned> counter{0};
  temp_ = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  // Registered before it exists, so that no signal finds it created but unlisted.
  slot_ = register_temp(temp_.c_str());
  fd_ = UniqueFd(::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (fd_.get() < 0) {
    const int err = errno;
    unregister_temp(slot_);
    errno = err;
    throw_io("cannot create " + temp_);
  }
}

AtomicFile::~AtomicFile() {
  if (!committed_) ::unlink(temp_.c_str());
  unregister_temp(slot_);
}

void AtomicFile::write_at(uint64_t offset, std::span<const std::byte> bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::pwrite(fd_.get(), bytes.data() + done, bytes.size() - done,
                         static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw_io("cannot write " + temp_);
    done += static_cast<size_t>(n);
  }
}

void AtomicFile::reserve(uint64_t size) {
  if (::fallocate(fd_.get(), 0, 0, static_cast<off_t>(size)) == 0) return;
  if (errno != EOPNOTSUPP && errno != ENOSYS) throw_io("cannot allocate " + temp_);
  if (::ftruncate(fd_.get(), static_cast<off_t>(size)) != 0) throw_io("cannot size " + temp_);
}

void AtomicFile::commit(bool durable) {
  if (durable && ::fsync(fd_.get()) != 0) throw_io("cannot fsync " + temp_);
  if (::close(fd_.release()) != 0) throw_io("cannot close " + temp_);
  if (::rename(temp_.c_str(), path_.c_str()) != 0)
    throw_io("cannot rename " + temp_ + " to " + path_);
  committed_ = true;
  unregister_temp(slot_);
  slot_ = -1;
  if (!durable) return;
  // The rename lives in the folder: flush it too, or a crash may undo it.
  const size_t slash = path_.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path_.substr(0, slash);
  UniqueFd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (d.get() >= 0) ::fsync(d.get());  // best effort: not every filesystem syncs directories
}

void write_file_atomic(const std::string& path, std::span<const std::byte> bytes, bool durable) {
  AtomicFile file(path);
  file.write_at(0, bytes);
  file.commit(durable);
}

}  // namespace flare
