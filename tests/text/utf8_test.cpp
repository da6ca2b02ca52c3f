#include "text/utf8.hpp"

#include <doctest/doctest.h>

#include <string>
#include <string_view>

using flare::text::display_width;
using flare::text::invalid_utf8_offset;
using flare::text::utf8_sequence_length;
using namespace std::string_view_literals;

TEST_CASE("well-formed sequences of every length are accepted") {
  CHECK(invalid_utf8_offset("plain ascii") == std::string_view::npos);
  CHECK(invalid_utf8_offset("é ü ß") == std::string_view::npos);            // 2 bytes
  CHECK(invalid_utf8_offset("日本語 €") == std::string_view::npos);         // 3 bytes
  CHECK(invalid_utf8_offset("🙂 \U0010FFFF") == std::string_view::npos);  // 4 bytes, the last one
  CHECK(utf8_sequence_length("a", 0) == 1);
  CHECK(utf8_sequence_length("é", 0) == 2);
  CHECK(utf8_sequence_length("€", 0) == 3);
  CHECK(utf8_sequence_length("🙂", 0) == 4);
}

TEST_CASE("the offset names the first byte that is not UTF-8") {
  CHECK(invalid_utf8_offset("ab\xFFz") == 2);                      // never a lead byte
  CHECK(invalid_utf8_offset("ok\x80") == 2);                       // stray continuation
  CHECK(invalid_utf8_offset("x\xC3") == 1);                        // truncated at the end
  CHECK(invalid_utf8_offset("x\xE2\x82(") == 1);                   // bad continuation
  CHECK(invalid_utf8_offset("\xC0\xAF") == 0);                     // overlong 2-byte
  CHECK(invalid_utf8_offset("\xE0\x80\xAF") == 0);                 // overlong 3-byte
  CHECK(invalid_utf8_offset("\xF0\x80\x80\xAF") == 0);             // overlong 4-byte
  CHECK(invalid_utf8_offset("ab\xED\xA0\x80") == 2);               // UTF-16 surrogate
  CHECK(invalid_utf8_offset("\xF4\x90\x80\x80") == 0);             // past U+10FFFF
  CHECK(invalid_utf8_offset("\xF5\x80\x80\x80") == 0);             // lead byte past F4
  CHECK(invalid_utf8_offset("a\0b"sv) == std::string_view::npos);  // NUL is valid UTF-8
}

TEST_CASE("display width counts terminal columns") {
  CHECK(display_width("abc") == 3);
  CHECK(display_width("日本") == 4);     // wide
  CHECK(display_width("e\u0301") == 1);  // combining acute accent takes none
  CHECK(display_width("\xFF") == 1);     // a malformed byte is one column (shown escaped)
}
