#pragma once
// UTF-8 as flare checks it everywhere (argv, JSON text, completions, names in
// files): well-formed sequences only, no overlong forms, surrogates or code
// points past U+10FFFF.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace flare::text {

// Length (1 to 4) of the well-formed UTF-8 sequence at s[i], or 0 when the
// bytes there are not one (bad lead byte, truncated, overlong, surrogate).
// Inline: the completion decoder calls it on its hot path.
inline size_t utf8_sequence_length(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return 1;
  const size_t len = (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (len == 0 || i + len > s.size()) return 0;
  if (len == 2 && c < 0xC2) return 0;  // overlong
  for (size_t k = 1; k < len; k++) {
    if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 0;
  }
  const auto c1 = static_cast<unsigned char>(s[i + 1]);
  if (len == 3 && ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0)))
    return 0;  // overlong, surrogate
  if (len == 4 && ((c == 0xF0 && c1 < 0x90) || c > 0xF4 || (c == 0xF4 && c1 >= 0x90))) return 0;
  return len;
}

// Offset of the first byte that is not part of valid UTF-8, or npos.
size_t invalid_utf8_offset(std::string_view s);

// Decodes the code point at s[i] and advances i past it; a byte that does not
// start a well-formed sequence is returned as itself (0x80..0xFF), and
// *malformed (when given) says which case it was.
uint32_t next_code_point(std::string_view s, size_t& i, bool* malformed = nullptr);

// Columns a terminal gives valid UTF-8 without control characters: East Asian
// wide and fullwidth characters take two, combining marks none.
size_t display_width(std::string_view s);

}  // namespace flare::text
