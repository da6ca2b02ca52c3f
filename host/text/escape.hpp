#pragma once
// Text made safe to show or to embed: one escaper for error messages and
// terminal tables, one for JSON string literals.
#include <string>
#include <string_view>

namespace flare::text {

// `s` with control characters (C0, DEL, C1) written as \xNN or \u00NN, and
// bytes that are not well-formed UTF-8 as \xNN, so a name or a message cannot
// move the cursor or recolour the terminal. Valid UTF-8 text is kept.
std::string printable(std::string_view s);

// Appends `s` as a JSON string literal (quotes included): `"` `\` and control
// characters escaped, every other byte copied as it is.
void append_json_string(std::string& out, std::string_view s);

}  // namespace flare::text
