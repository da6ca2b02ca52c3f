#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "emulator/engine/stop_matcher.hpp"

using flare::engine::incomplete_utf8_tail;
using flare::engine::StopMatcher;

namespace {

struct Fed {
  std::string streamed;
  bool stopped = false;
  int stopped_at = -1;  // index of the piece that completed the stop
};

Fed feed_all(StopMatcher& m, const std::vector<std::string>& pieces) {
  Fed f;
  for (size_t i = 0; i < pieces.size(); ++i) {
    auto step = m.feed(pieces[i]);
    f.streamed += step.released;
    if (step.stopped) {
      f.stopped = true;
      f.stopped_at = static_cast<int>(i);
      return f;
    }
  }
  f.streamed += m.flush();
  return f;
}

}  // namespace

TEST_CASE("a stop string split across token pieces is found and cut off") {
  StopMatcher m({"\n\n", "END"});
  auto f = feed_all(m, {"h", "i", " E", "N", "D", "!", "x"});
  CHECK(f.stopped);
  CHECK(f.stopped_at == 4);
  CHECK(m.text() == "hi ");
  CHECK(f.streamed == "hi ");
}

TEST_CASE("text after the stop string is never returned") {
  StopMatcher m({"stop"});
  auto f = feed_all(m, {"ab", "cst", "opde", "f"});
  CHECK(f.stopped);
  CHECK(f.stopped_at == 2);
  CHECK(m.text() == "abc");
  CHECK(f.streamed == "abc");
}

TEST_CASE("the earliest-starting stop string wins when several complete together") {
  StopMatcher m({"cd", "bcd"});
  auto f = feed_all(m, {"a", "b", "c", "d"});
  CHECK(f.stopped);
  CHECK(m.text() == "a");
}

TEST_CASE("a partial stop string is held back and released when it does not complete") {
  StopMatcher m({"END"});
  auto s1 = m.feed("xE");
  CHECK(s1.released == "x");
  auto s2 = m.feed("N");
  CHECK(s2.released.empty());
  auto s3 = m.feed("o");
  CHECK(s3.released == "ENo");
  CHECK_FALSE(s3.stopped);
  CHECK(m.flush().empty());
  CHECK(m.text() == "xENo");
}

TEST_CASE("without stop strings everything is released at once, and flush returns the rest") {
  StopMatcher m({});
  CHECK(m.feed("ab").released == "ab");
  CHECK(m.feed("").released.empty());
  CHECK(m.flush().empty());
  CHECK(m.text() == "ab");
}

TEST_CASE("a stop string at the very start leaves empty text") {
  StopMatcher m({"#"});
  auto step = m.feed("#");
  CHECK(step.stopped);
  CHECK(m.text().empty());
  CHECK(step.released.empty());
}

TEST_CASE("a UTF-8 character split across byte tokens is streamed whole") {
  StopMatcher m({});
  const std::string euro = "\xE2\x82\xAC";
  CHECK(m.feed(euro.substr(0, 1)).released.empty());
  CHECK(m.feed(euro.substr(1, 1)).released.empty());
  CHECK(m.feed(euro.substr(2, 1)).released == euro);
  CHECK(m.feed("a").released == "a");
  // an unfinished character at the end is released by flush
  CHECK(m.feed("\xC3").released.empty());
  CHECK(m.flush() == "\xC3");
}

TEST_CASE("incomplete UTF-8 tails") {
  CHECK(incomplete_utf8_tail("") == 0);
  CHECK(incomplete_utf8_tail("abc") == 0);
  CHECK(incomplete_utf8_tail("a\xC3") == 1);
  CHECK(incomplete_utf8_tail("a\xC3\xA9") == 0);
  CHECK(incomplete_utf8_tail("\xF0\x9F\x98") == 3);
  CHECK(incomplete_utf8_tail("\xF0\x9F\x98\x80") == 0);
  CHECK(incomplete_utf8_tail("\x80\x80") == 0);  // stray continuation bytes: nothing to wait for
  CHECK(incomplete_utf8_tail("\xFF") == 0);
}

TEST_CASE("empty stop strings match nothing") {
  StopMatcher m({"", "zz"});
  auto f = feed_all(m, {"a", "b"});
  CHECK_FALSE(f.stopped);
  CHECK(f.streamed == "ab");
}
