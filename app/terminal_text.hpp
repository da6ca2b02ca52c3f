#pragma once
// Text from files (tensor names, metadata) made safe and measurable for a
// terminal table.
#include <cstddef>
#include <string>
#include <string_view>

namespace flare::cli {

// `s` with control characters (C0, DEL, C1) written as \xNN or \u00NN, and
// bytes that are not well-formed UTF-8 as \xNN, so a name cannot move the
// cursor or recolour the terminal.
std::string printable(std::string_view s);

// Columns a terminal gives valid UTF-8 without control characters: East Asian
// wide and fullwidth characters take two, combining marks none.
size_t display_width(std::string_view s);

}  // namespace flare::cli
