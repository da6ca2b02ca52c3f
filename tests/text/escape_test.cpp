#include "text/escape.hpp"

#include <doctest/doctest.h>

#include <string>
#include <string_view>

using flare::text::append_json_string;
using flare::text::printable;
using namespace std::string_view_literals;

TEST_CASE("printable escapes control characters and malformed bytes, keeps UTF-8 text") {
  CHECK(printable("name") == "name");
  CHECK(printable("esc\x1B[31mred") == "esc\\x1B[31mred");
  CHECK(printable("a\nb\tc\x7F") == "a\\x0Ab\\x09c\\x7F");
  CHECK(printable("nul\0!"sv) == "nul\\x00!");
  CHECK(printable("bad\xFF\xC3") == "bad\\xFF\\xC3");
  CHECK(printable("c1 \xC2\x9B") == "c1 \\u009B");  // C1 control (CSI) in UTF-8
  CHECK(printable("日本 é") == "日本 é");
  CHECK(printable("quote \" and \\ kept") == "quote \" and \\ kept");
}

TEST_CASE("append_json_string writes a JSON literal") {
  std::string out = "x=";
  append_json_string(out, "plain");
  CHECK(out == "x=\"plain\"");
  out.clear();
  append_json_string(out, "q\"b\\n\nr\rt\tb\bf\f");
  CHECK(out == R"("q\"b\\n\nr\rt\tb\bf\f")");
  out.clear();
  append_json_string(out, "\x01\x1F\0"sv);
  CHECK(out == R"("\u0001\u001f\u0000")");
  out.clear();
  append_json_string(out, "é\x7F");  // non-ASCII and DEL copied as they are
  CHECK(out == "\"é\x7F\"");
}
