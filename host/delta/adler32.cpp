#include "delta/adler32.hpp"

#include <isa-l/igzip_lib.h>
#include <zlib.h>
#ifdef adler32_combine
#undef adler32_combine  // zlib may alias it to adler32_combine64 under large-file builds
#endif

#include <vector>

#include "runtime/shared_library.hpp"
#include "runtime/thread_pool.hpp"

namespace flare::delta {

namespace {

// ISA-L is opened when the first checksum is taken (runtime/shared_library.hpp):
// scripts that never touch a checkpoint do not map it.
decltype(&::isal_adler32) isal() {
  static const auto fn = [] {
    static SharedLibrary lib({"libisal.so.2"}, "Adler-32 (ISA-L)");
    return lib.function<decltype(::isal_adler32)>("isal_adler32");
  }();
  return fn;
}

}  // namespace

uint32_t adler32(std::span<const std::byte> data, uint32_t seed) {
  return isal()(seed, reinterpret_cast<const unsigned char*>(data.data()), data.size());
}

uint32_t adler32_combine(uint32_t adler_a, uint32_t adler_b, uint64_t length_b) {
  return static_cast<uint32_t>(::adler32_combine(adler_a, adler_b, static_cast<z_off_t>(length_b)));
}

uint32_t adler32_parallel(std::span<const std::byte> data, unsigned threads) {
  constexpr size_t kPiece = size_t{8} << 20;
  if (data.size() <= 2 * kPiece) return adler32(data);
  size_t pieces = (data.size() + kPiece - 1) / kPiece;
  std::vector<uint32_t> sums(pieces);
  parallel_for(pieces, threads, [&](size_t i) {
    sums[i] = adler32(data.subspan(i * kPiece).first(std::min(kPiece, data.size() - i * kPiece)));
  });
  uint32_t total = sums[0];
  for (size_t i = 1; i < pieces; ++i)
    total = adler32_combine(total, sums[i], std::min(kPiece, data.size() - i * kPiece));
  return total;
}

}  // namespace flare::delta
