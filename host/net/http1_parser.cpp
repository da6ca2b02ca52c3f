#include "net/http1_parser.hpp"

#include <algorithm>
#include <charconv>
#include <system_error>

namespace flare::net {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

bool parse_status_line(std::string_view line, int& status, bool& http10) {
  if (line.size() < 12 || !line.starts_with("HTTP/1.") || (line[7] != '0' && line[7] != '1') ||
      line[8] != ' ' || line[9] < '1' || line[9] > '5' || line[10] < '0' || line[10] > '9' ||
      line[11] < '0' || line[11] > '9' || (line.size() > 12 && line[12] != ' '))
    return false;
  status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
  http10 = line[7] == '0';
  return true;
}

bool parse_content_length(std::string_view value, std::size_t& length) {
  auto r = std::from_chars(value.data(), value.data() + value.size(), length);
  return !value.empty() && r.ec == std::errc() && r.ptr == value.data() + value.size();
}

bool parse_chunk_size(std::string_view line, std::size_t& size) {
  line = trim(line.substr(0, line.find(';')));
  auto r = std::from_chars(line.data(), line.data() + line.size(), size, 16);
  return !line.empty() && r.ec == std::errc() && r.ptr == line.data() + line.size();
}

void store_header(Response& response, std::size_t& count, std::string_view name,
                  std::string_view value) {
  auto& items = response.headers.items;
  if (count < items.size()) {
    items[count].first.assign(name);
    items[count].second.assign(value);
  } else {
    items.emplace_back(std::string(name), std::string(value));
  }
  ++count;
}

void reserve_body(Response& response, std::size_t declared_length) {
  response.body.reserve(std::min(declared_length, kMaxBodyReserve));
}

namespace {

// Takes one line (without its CR LF) from in[off..], if complete.
bool take_line(const std::string& in, std::size_t& off, std::string_view& line) {
  auto nl = in.find('\n', off);
  if (nl == std::string::npos) return false;
  line = std::string_view(in).substr(off, nl - off);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  off = nl + 1;
  return true;
}

// Appends up to `remaining` bytes of in[off..] to `body`.
void take_body(const std::string& in, std::size_t& off, std::size_t& remaining, std::string& body) {
  std::size_t take = std::min(in.size() - off, remaining);
  body.append(in, off, take);
  off += take;
  remaining -= take;
}

// "timeout=5, max=100" -> 5; -1 without a timeout.
int parse_keep_alive_timeout(std::string_view value) {
  auto at = value.find("timeout=");
  if (at == std::string_view::npos) return -1;
  int seconds = -1;
  for (char c : value.substr(at + 8)) {
    if (c < '0' || c > '9' || seconds > 100000) break;
    seconds = (seconds < 0 ? 0 : seconds * 10) + (c - '0');
  }
  return seconds;
}

}  // namespace

void ResponseParser::begin() {
  phase_ = Phase::Status;
  failure_ = Failure::None;
  message_ = "";
}

ResponseParser::Result ResponseParser::fail(Failure failure, const char* message) {
  keep_alive_ = false;
  failure_ = failure;
  message_ = message;
  return Result::Failed;
}

// Counts a line of the response head (0: none complete, then the incomplete
// line still pending counts); false once the head is over kMaxHeadBytes.
bool ResponseParser::head_fits(std::size_t line, std::size_t pending) {
  head_bytes_ += line;
  return head_bytes_ + (line ? 0 : pending) <= kMaxHeadBytes;
}

ResponseParser::Result ResponseParser::feed(const std::string& in, std::size_t& off,
                                            Response& response, std::size_t& header_count) {
  static constexpr const char* kTooLarge = "response headers larger than 300 KB";
  for (;;) {
    std::string_view line;
    switch (phase_) {
      case Phase::Status: {
        if (!take_line(in, off, line)) {
          if (!head_fits(0, in.size() - off)) return fail(Failure::BadReply, kTooLarge);
          return Result::More;
        }
        head_bytes_ = 0;
        if (!head_fits(line.size() + 2, 0)) return fail(Failure::BadReply, kTooLarge);
        bool http10 = false;
        if (!parse_status_line(line, response.status, http10))
          return fail(Failure::BadReply, "Unsupported HTTP version or bad status line");
        keep_alive_ = !http10;
        keep_alive_timeout_s_ = -1;
        interim_ = response.status < 200;
        chunked_ = false;
        has_length_ = false;
        remaining_ = 0;
        header_count = 0;
        phase_ = Phase::Headers;
        break;
      }
      case Phase::Headers: {
        if (!take_line(in, off, line)) {
          if (!head_fits(0, in.size() - off)) return fail(Failure::BadReply, kTooLarge);
          return Result::More;
        }
        if (!head_fits(line.size() + 2, 0)) return fail(Failure::BadReply, kTooLarge);
        if (!line.empty()) {
          auto colon = line.find(':');
          if (colon == std::string_view::npos)  // as libcurl
            return fail(Failure::BadReply, "Header without colon");
          auto name = trim(line.substr(0, colon));
          auto value = trim(line.substr(colon + 1));
          if (iequals(name, "content-length")) {
            if (!parse_content_length(value, remaining_))
              return fail(Failure::BadReply, "Invalid Content-Length: value");
            has_length_ = true;
          } else if (iequals(name, "transfer-encoding")) {
            if (value.find("chunked") != std::string_view::npos) chunked_ = true;
          } else if (iequals(name, "connection")) {
            if (iequals(value, "close")) keep_alive_ = false;
            if (iequals(value, "keep-alive")) keep_alive_ = true;
          } else if (iequals(name, "keep-alive")) {
            keep_alive_timeout_s_ = parse_keep_alive_timeout(value);
          }
          if (!interim_) store_header(response, header_count, name, value);
          break;
        }
        if (interim_) {  // 100 Continue and the like: the real response follows
          phase_ = Phase::Status;
          break;
        }
        if (response.status == 204 || response.status == 304) return Result::Done;
        if (chunked_) {
          phase_ = Phase::ChunkSize;
        } else if (has_length_) {
          reserve_body(response, remaining_);
          phase_ = Phase::Body;
        } else {
          keep_alive_ = false;
          phase_ = Phase::UntilClose;
        }
        break;
      }
      case Phase::Body:
        take_body(in, off, remaining_, response.body);
        return remaining_ > 0 ? Result::More : Result::Done;
      case Phase::UntilClose:
        response.body.append(in, off);
        off = in.size();
        return Result::More;
      case Phase::ChunkSize:
        if (!take_line(in, off, line)) return Result::More;
        if (!parse_chunk_size(line, remaining_))
          return fail(Failure::BadFraming, "invalid chunk size in the response");
        phase_ = remaining_ == 0 ? Phase::Trailer : Phase::ChunkData;
        break;
      case Phase::ChunkData:
        take_body(in, off, remaining_, response.body);
        if (remaining_ > 0) return Result::More;
        phase_ = Phase::ChunkEnd;
        break;
      case Phase::ChunkEnd:
        if (!take_line(in, off, line)) return Result::More;
        if (!line.empty())
          return fail(Failure::BadFraming, "malformed chunked encoding in the response");
        phase_ = Phase::ChunkSize;
        break;
      case Phase::Trailer:
        if (!take_line(in, off, line)) return Result::More;
        if (line.empty()) return Result::Done;
        break;
    }
  }
}

}  // namespace flare::net
