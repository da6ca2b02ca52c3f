#pragma once
// LEB128 unsigned varints over byte buffers.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace flare::delta {

inline void put_varint(std::vector<std::byte>& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<std::byte>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<std::byte>(v));
}

// Reads a varint at `pos`, advancing it; nullopt when truncated or longer than 10 bytes.
inline std::optional<uint64_t> get_varint(std::span<const std::byte> in, size_t& pos) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos >= in.size()) return std::nullopt;
    uint64_t b = std::to_integer<uint64_t>(in[pos++]);
    if (shift == 63 && b > 1) return std::nullopt;
    v |= (b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  return std::nullopt;
}

}  // namespace flare::delta
