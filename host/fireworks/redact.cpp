#include "fireworks/redact.hpp"

namespace flare::fireworks {

std::string redact_key(std::string_view key) {
  if (key.size() <= 12) return "<redacted>";
  std::string out;
  auto underscore = key.find('_');
  if (underscore != std::string_view::npos && underscore < 8)
    out.assign(key.substr(0, underscore + 1));
  out += "\xE2\x80\xA6";  // "…"
  out.append(key.substr(key.size() - 4));
  return out;
}

std::string redact_text(std::string_view text, std::string_view key) {
  if (key.empty()) return std::string(text);
  std::string replacement = redact_key(key);
  std::string out;
  out.reserve(text.size());
  std::size_t pos = 0;
  for (;;) {
    std::size_t hit = text.find(key, pos);
    if (hit == std::string_view::npos) break;
    out.append(text.substr(pos, hit - pos));
    out += replacement;
    pos = hit + key.size();
  }
  out.append(text.substr(pos));
  return out;
}

}  // namespace flare::fireworks
