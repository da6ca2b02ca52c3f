// The response parser of the direct transport, without sockets.
#include "net/http1_parser.hpp"

#include <doctest/doctest.h>

#include <string>

using flare::net::Response;
using flare::net::ResponseParser;

namespace {

struct Parsed {
  ResponseParser::Result result;
  Response response;
  std::size_t header_count = 0;
  std::size_t off = 0;
  ResponseParser parser;
};

// Feeds `wire` in pieces of `piece` bytes, as a connection would.
Parsed parse(const std::string& wire, std::size_t piece = 1 << 20) {
  Parsed p;
  p.parser.begin();
  std::string in;
  p.result = ResponseParser::Result::More;
  for (std::size_t at = 0; at < wire.size() && p.result == ResponseParser::Result::More;
       at += piece) {
    in.append(wire, at, piece);
    p.result = p.parser.feed(in, p.off, p.response, p.header_count);
  }
  p.response.headers.items.resize(p.header_count);
  return p;
}

}  // namespace

TEST_CASE("http1: status lines") {
  int status = 0;
  bool http10 = false;
  CHECK(flare::net::parse_status_line("HTTP/1.1 200 OK", status, http10));
  CHECK(status == 200);
  CHECK_FALSE(http10);
  CHECK(flare::net::parse_status_line("HTTP/1.0 404", status, http10));
  CHECK(status == 404);
  CHECK(http10);
  CHECK_FALSE(flare::net::parse_status_line("HTTP/1.1 2OO OK", status, http10));
  CHECK_FALSE(flare::net::parse_status_line("HTTP/2 200", status, http10));
  CHECK_FALSE(flare::net::parse_status_line("HTTP/1.1 200OK", status, http10));
  CHECK_FALSE(flare::net::parse_status_line("HTTP/1.1 600 X", status, http10));
}

TEST_CASE("http1: Content-Length values and chunk sizes") {
  std::size_t n = 0;
  CHECK(flare::net::parse_content_length("0", n));
  CHECK(flare::net::parse_content_length("12345", n));
  CHECK(n == 12345);
  CHECK_FALSE(flare::net::parse_content_length("", n));
  CHECK_FALSE(flare::net::parse_content_length("-1", n));
  CHECK_FALSE(flare::net::parse_content_length("5x", n));
  CHECK_FALSE(flare::net::parse_content_length("99999999999999999999999", n));
  CHECK(flare::net::parse_chunk_size("1a", n));
  CHECK(n == 26);
  CHECK(flare::net::parse_chunk_size("A;name=\"v\"", n));
  CHECK(n == 10);
  CHECK(flare::net::parse_chunk_size("5 ; ext", n));
  CHECK(n == 5);
  CHECK_FALSE(flare::net::parse_chunk_size("", n));
  CHECK_FALSE(flare::net::parse_chunk_size("zz", n));
  CHECK_FALSE(flare::net::parse_chunk_size("1ffffffffffffffff", n));
}

TEST_CASE("http1: the same response in one piece and byte by byte") {
  const std::string wire =
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A:  a \r\n\r\n"
      "3;x=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\n";
  for (std::size_t piece : {std::size_t{1}, std::size_t{7}, wire.size()}) {
    CAPTURE(piece);
    auto p = parse(wire, piece);
    CHECK(p.result == ResponseParser::Result::Done);
    CHECK(p.off == wire.size());
    CHECK(p.response.status == 200);
    CHECK(p.response.body == "abcde");
    REQUIRE(p.response.headers.items.size() == 2);
    CHECK(*p.response.headers.find("x-a") == "a");
    CHECK(p.parser.keep_alive());
    CHECK(p.parser.keep_alive_timeout_s() == -1);
  }
}

TEST_CASE("http1: the keep-alive time the server announces") {
  auto a =
      parse("HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5, max=10000\r\nContent-Length: 0\r\n\r\n");
  CHECK(a.result == ResponseParser::Result::Done);
  CHECK(a.parser.keep_alive_timeout_s() == 5);
  auto b = parse("HTTP/1.1 200 OK\r\nKeep-Alive: max=3\r\nContent-Length: 0\r\n\r\n");
  CHECK(b.parser.keep_alive_timeout_s() == -1);
}

TEST_CASE("http1: framing, keep-alive and errors") {
  auto a = parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcEXTRA");
  CHECK(a.result == ResponseParser::Result::Done);
  CHECK(a.response.body == "abc");
  CHECK(a.off == 41);  // the extra bytes are left for the caller

  auto b = parse("HTTP/1.0 200 OK\r\n\r\nuntil close");
  CHECK(b.result == ResponseParser::Result::More);
  CHECK(b.parser.until_close());
  CHECK_FALSE(b.parser.keep_alive());
  CHECK(b.response.body == "until close");

  auto c = parse("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n");
  CHECK(c.result == ResponseParser::Result::Done);
  CHECK(c.response.body.empty());

  auto d = parse("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 10\r\n\r\nabc");
  CHECK(d.result == ResponseParser::Result::More);
  CHECK(d.parser.in_length_body());
  CHECK(d.parser.remaining() == 7);
  CHECK_FALSE(d.parser.keep_alive());

  auto e = parse("HTTP/1.1 200 OK\r\nno colon\r\n\r\n");
  CHECK(e.result == ResponseParser::Result::Failed);
  CHECK(e.parser.failure() == ResponseParser::Failure::BadReply);

  auto f = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n");
  CHECK(f.result == ResponseParser::Result::Failed);
  CHECK(f.parser.failure() == ResponseParser::Failure::BadFraming);

  // A declared length is not trusted with memory: found by tests/fuzz/fuzz_http1
  // (a 4 GB Content-Length made the parser reserve 4 GB before any body byte).
  auto big = parse("HTTP/1.1 200 OK\r\nContent-Length: 4000000000\r\n\r\nab");
  CHECK(big.result == ResponseParser::Result::More);
  CHECK(big.response.body == "ab");
  CHECK(big.response.body.capacity() <= flare::net::kMaxBodyReserve);
  CHECK(big.parser.remaining() == 4000000000u - 2);

  auto g = parse("HTTP/1.1 200 OK\r\nX: " + std::string(400 * 1024, 'x'), 4096);
  CHECK(g.result == ResponseParser::Result::Failed);
  CHECK(std::string(g.parser.message()).find("larger than") != std::string::npos);
}
