#pragma once
// Keeping API keys out of everything a user can see: messages, logs, tostring.
#include <string>
#include <string_view>

namespace flare::fireworks {

// "fw_…abcd" style: the key's prefix up to its first '_' (at most 8 chars) and
// its last 4 characters; keys of 12 characters or fewer become "<redacted>".
std::string redact_key(std::string_view key);

// `text` with every occurrence of `key` replaced by redact_key(key). Keys
// shorter than 8 characters are also replaced (they could otherwise leak).
std::string redact_text(std::string_view text, std::string_view key);

}  // namespace flare::fireworks
