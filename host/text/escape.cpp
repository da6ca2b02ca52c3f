#include "text/escape.hpp"

#include <cstdint>

#include "text/utf8.hpp"

namespace flare::text {
namespace {

constexpr char kHex[] = "0123456789ABCDEF";
constexpr char kLowerHex[] = "0123456789abcdef";

// The letter of JSON's two-character escape for c (n for a newline...), or 0.
char short_escape(unsigned char c) {
  constexpr std::string_view from = "\"\\\n\r\t\b\f", letter = "\"\\nrtbf";
  const size_t k = from.find(static_cast<char>(c));
  return k == std::string_view::npos ? 0 : letter[k];
}

}  // namespace

std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t at = i;
    bool malformed = false;
    const uint32_t cp = next_code_point(s, i, &malformed);
    if (malformed || cp < 0x20 || cp == 0x7F) {
      const char esc[4] = {'\\', 'x', kHex[cp >> 4], kHex[cp & 15]};
      out.append(esc, 4);
    } else if (cp >= 0x80 && cp <= 0x9F) {
      const char esc[6] = {'\\', 'u', '0', '0', kHex[cp >> 4], kHex[cp & 15]};
      out.append(esc, 6);
    } else {
      out.append(s.substr(at, i - at));
    }
  }
  return out;
}

void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  size_t run = 0;  // start of the pending run of bytes that need no escape
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    if (const char e = short_escape(c)) {
      const char esc[2] = {'\\', e};
      out.append(esc, 2);
    } else {
      const char esc[6] = {'\\', 'u', '0', '0', kLowerHex[c >> 4], kLowerHex[c & 15]};
      out.append(esc, 6);
    }
  }
  out.append(s.data() + run, s.size() - run);
  out.push_back('"');
}

}  // namespace flare::text
