#include "emulator/engine/stop_matcher.hpp"

#include <algorithm>

namespace flare::engine {

StopMatcher::StopMatcher(std::vector<std::string> stops) {
  for (auto& s : stops) {
    if (s.empty()) continue;  // matches nowhere
    longest_stop_ = std::max(longest_stop_, s.size());
    stops_.push_back(std::move(s));
  }
}

size_t incomplete_utf8_tail(std::string_view s) {
  // Look back at most 3 bytes for the lead byte of a multi-byte character.
  const size_t n = s.size();
  for (size_t back = 1; back <= std::min<size_t>(3, n); ++back) {
    const auto c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking
    size_t need = 0;
    if ((c & 0xE0) == 0xC0)
      need = 2;
    else if ((c & 0xF0) == 0xE0)
      need = 3;
    else if ((c & 0xF8) == 0xF0)
      need = 4;
    return need > back ? back : 0;  // ASCII, invalid lead, or complete: nothing held
  }
  return 0;
}

size_t StopMatcher::safe_end() const {
  // Hold back the longest suffix that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const auto& s : stops_) {
    const size_t max_len = std::min(s.size() - 1, text_.size());
    for (size_t len = max_len; len > hold; --len) {
      if (text_.compare(text_.size() - len, len, s, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  size_t end = text_.size() - hold;
  end -= incomplete_utf8_tail(std::string_view(text_).substr(0, end));
  return std::max(end, released_);
}

StopMatcher::Step StopMatcher::feed(std::string_view piece) {
  Step step;
  if (stopped_) return step;
  const size_t old_size = text_.size();
  text_.append(piece);
  if (!stops_.empty() && !piece.empty()) {
    // Only occurrences that end inside the new piece are new.
    const size_t from = old_size >= longest_stop_ ? old_size - longest_stop_ + 1 : 0;
    size_t cut = std::string::npos;
    for (const auto& s : stops_) {
      const size_t at = text_.find(s, from);
      if (at != std::string::npos && at + s.size() > old_size) cut = std::min(cut, at);
    }
    if (cut != std::string::npos) {
      text_.resize(cut);
      stopped_ = true;
      step.stopped = true;
      if (cut > released_) step.released = text_.substr(released_);
      released_ = text_.size();
      return step;
    }
  }
  const size_t end = safe_end();
  step.released = text_.substr(released_, end - released_);
  released_ = end;
  return step;
}

std::string StopMatcher::flush() {
  std::string rest = released_ < text_.size() ? text_.substr(released_) : std::string();
  released_ = text_.size();
  return rest;
}

}  // namespace flare::engine
