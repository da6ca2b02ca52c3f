#pragma once
#include <cstddef>
#include <string_view>

namespace flare::cli {

// Offset of the first byte that is not part of valid UTF-8, or npos.
size_t invalid_utf8_offset(std::string_view s);

}  // namespace flare::cli
