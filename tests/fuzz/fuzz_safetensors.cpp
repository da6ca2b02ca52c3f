// libFuzzer target: the safetensors header parser. Whatever it accepts must
// re-serialize to a file that parses to the same tensors.
#include <cstdint>
#include <cstdlib>
#include <exception>

#include "delta/safetensors.hpp"

using namespace flare::delta;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  std::vector<TensorView> tensors;
  Metadata meta;
  try {
    SafetensorsFile f = SafetensorsFile::view_bytes(in);
    tensors = f.tensors();
    meta = f.metadata();
    if (tensors.size() > 1000) return 0;
    std::vector<std::byte> again = serialize_safetensors(tensors, meta);
    SafetensorsFile g = SafetensorsFile::view_bytes(again);
    if (g.tensors().size() != tensors.size() || g.metadata() != meta) std::abort();
    for (const auto& t : tensors) {
      const TensorView& u = g.at(t.name);
      if (u.dtype != t.dtype || u.shape != t.shape ||
          !std::equal(u.data.begin(), u.data.end(), t.data.begin(), t.data.end()))
        std::abort();
    }
  } catch (const std::exception&) {
  }
  return 0;
}
