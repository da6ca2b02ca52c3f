#pragma once
// Completion text of one choice, built token piece by token piece: detects stop
// strings that span token boundaries, cuts the text where the first one begins,
// and tells a stream which text is already safe to send — never a prefix of a
// stop string that may still complete, nor half of a UTF-8 character.
#include <string>
#include <string_view>
#include <vector>

namespace flare::engine {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  struct Step {
    bool stopped = false;  // a stop string completed; the text now ends before it
    std::string released;  // text that became safe to send
  };
  // Appends the text of one token.
  Step feed(std::string_view piece);
  // Releases everything held back (call once when the choice ends without a stop).
  std::string flush();

  const std::string& text() const { return text_; }
  bool stopped() const { return stopped_; }

 private:
  size_t safe_end() const;

  std::vector<std::string> stops_;
  size_t longest_stop_ = 0;
  std::string text_;
  size_t released_ = 0;
  bool stopped_ = false;
};

// Length of the longest suffix of `s` that is an incomplete (but so far
// well-formed) UTF-8 sequence; 0 when s ends on a character boundary.
size_t incomplete_utf8_tail(std::string_view s);

}  // namespace flare::engine
