#pragma once
#include <cstddef>
#include <string_view>

namespace flare::cli {

// Length (1 to 4) of the well-formed UTF-8 sequence at s[i], or 0 when the
// bytes there are not one (bad lead byte, truncated, overlong, surrogate).
size_t utf8_sequence_length(std::string_view s, size_t i);

// Offset of the first byte that is not part of valid UTF-8, or npos.
size_t invalid_utf8_offset(std::string_view s);

}  // namespace flare::cli
