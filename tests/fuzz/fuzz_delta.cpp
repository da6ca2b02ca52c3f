// libFuzzer target: the delta container parser and every chunk decoder.
// Inputs are used twice: as they are (prefix and checksum checks), and with the
// prefix's lengths and checksums recomputed, so mutations of the header JSON
// and of the payload reach the decoders instead of stopping at a checksum.
#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <exception>

#include "delta/codec.hpp"
#include "fuzz_fixture.hpp"

using namespace flare::delta;

namespace {

uint32_t zadler(const std::byte* p, size_t n) {
  return static_cast<uint32_t>(
      ::adler32(1, reinterpret_cast<const Bytef*>(p), static_cast<uInt>(n)));
}
void put(std::vector<std::byte>& b, size_t at, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) b[at + i] = static_cast<std::byte>((v >> (8 * i)) & 0xff);
}

void try_apply(std::span<const std::byte> delta, const std::vector<TensorView>& base) {
  try {
    DeltaInfo info = inspect(delta);
    uint64_t out = 0;
    for (const auto& t : info.tensors) out += t.bytes;
    if (out > (64u << 20)) return;  // a legal but huge output: not what is being fuzzed
    ApplyOptions o;
    o.threads = 1;
    flare::delta::apply(base, delta, o);
  } catch (const std::exception&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<Tensor> base_tensors = fuzz::fuzz_base();
  static const std::vector<TensorView> base = fuzz::views_of(base_tensors);
  std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  try_apply(in, base);
  if (size >= 40) {
    std::vector<std::byte> fixed(in.begin(), in.end());
    uint64_t h = 0;
    for (int i = 7; i >= 0; --i) h = (h << 8) | std::to_integer<uint64_t>(fixed[16 + i]);
    const uint64_t rest = size - 40;
    if (h > rest) h = rest;
    put(fixed, 16, h, 8);
    put(fixed, 24, rest - h, 8);
    put(fixed, 12, zadler(fixed.data() + 40, h), 4);
    put(fixed, 32, zadler(fixed.data() + 40 + h, rest - h), 4);
    try_apply(fixed, base);
  }
  return 0;
}
