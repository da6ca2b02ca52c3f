// libFuzzer target: the HTTP/1.1 response parser of the direct transport
// (host/net/http1_parser.cpp), fed the bytes a hostile server could send.
// The input is a response stream; its first byte seeds how it is cut into
// reads. Fed in pieces, the parser must reach the same responses (status,
// headers, body, outcome) as fed everything at once, and reuse on a kept-alive
// connection must work as the transport does it (begin() after Done).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "net/http1_parser.hpp"

using namespace flare::net;

namespace {

struct Outcome {
  ResponseParser::Result result;
  ResponseParser::Failure failure;
  int status;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool keep_alive;
  bool until_close;
  bool operator==(const Outcome&) const = default;
};

// Feeds `stream` in reads of the sizes `next_read` gives; up to 4 responses.
template <class NextRead>
std::vector<Outcome> parse(const std::string& stream, NextRead next_read) {
  std::vector<Outcome> outcomes;
  ResponseParser parser;
  parser.begin();
  Response response;
  std::size_t header_count = 0, off = 0, fed = 0;
  std::string in;
  auto record = [&](ResponseParser::Result r) {
    std::vector<std::pair<std::string, std::string>> headers(
        response.headers.items.begin(), response.headers.items.begin() + header_count);
    outcomes.push_back({r, parser.failure(), response.status, headers, response.body,
                        parser.keep_alive(), parser.until_close()});
  };
  while (outcomes.size() < 4) {
    auto r = parser.feed(in, off, response, header_count);
    if (r == ResponseParser::Result::Done) {
      if (header_count > response.headers.items.size()) std::abort();
      record(r);
      if (!parser.keep_alive()) return outcomes;
      parser.begin();
      response.body.clear();
      header_count = 0;
      continue;
    }
    if (r == ResponseParser::Result::Failed) {
      if (parser.message()[0] == '\0') std::abort();  // a failure always says why
      record(r);
      return outcomes;
    }
    if (off > in.size()) std::abort();
    if (fed == stream.size()) {  // the server closed the connection
      record(r);
      return outcomes;
    }
    std::size_t n = std::min(next_read(), stream.size() - fed);
    in.append(stream, fed, n);
    fed += n;
  }
  return outcomes;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto whole = parse(stream, [&] { return stream.size(); });
  std::uint32_t x = data[0] * 2654435761u + 1;
  auto pieces = parse(stream, [&] {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return std::size_t{1} + x % (data[0] & 0x80 ? 7 : 97);
  });
  if (whole != pieces) std::abort();

  // The pure helpers on the same bytes.
  std::string_view text(stream);
  int status = 0;
  bool http10 = false;
  if (parse_status_line(text.substr(0, text.find('\n')), status, http10) &&
      (status < 100 || status > 599))
    std::abort();
  std::size_t n = 0;
  parse_content_length(text.substr(0, 24), n);
  parse_chunk_size(text.substr(0, 24), n);
  return 0;
}
