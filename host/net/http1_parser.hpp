#pragma once
// HTTP/1.1 response parsing for the direct transport, without I/O: status
// line, headers, Content-Length, chunked and until-close bodies, 1xx interim
// responses skipped. Pure functions and one incremental parser.
#include <cstddef>
#include <string>
#include <string_view>

#include "net/http_client.hpp"

namespace flare::net {

// ASCII case-insensitive comparison (header names).
bool iequals(std::string_view a, std::string_view b);
// Without leading blanks and trailing blanks or line ends.
std::string_view trim(std::string_view s);

// "HTTP/1.x NNN[ reason]": the status and whether it is HTTP/1.0.
bool parse_status_line(std::string_view line, int& status, bool& http10);
// A Content-Length value: decimal digits only, no overflow.
bool parse_content_length(std::string_view value, std::size_t& length);
// A chunk-size line without its CR LF: hex digits, then an optional ";extension".
bool parse_chunk_size(std::string_view line, std::size_t& size);

// Sets header number `count` of `response` (reusing the strings of an earlier
// response, so that they keep their capacity) and increments `count`.
void store_header(Response& response, std::size_t& count, std::string_view name,
                  std::string_view value);

// Response heads larger than this are refused (libcurl's limit is about the same).
constexpr std::size_t kMaxHeadBytes = 300 * 1024;

// Room reserved up front for a body of the declared Content-Length, at most
// kMaxBodyReserve: a server's header alone must not make the client allocate
// gigabytes (a longer body still arrives, growing the string as it does).
constexpr std::size_t kMaxBodyReserve = std::size_t{8} << 20;
void reserve_body(Response& response, std::size_t declared_length);

// One response at a time, fed the bytes of a connection as they arrive.
class ResponseParser {
 public:
  enum class Result { More, Done, Failed };
  enum class Failure { None, BadReply, BadFraming };

  // Starts a new response.
  void begin();
  // Parses what it can of in[off..], advancing `off`; the status, the headers
  // (through `header_count`) and the body go to `response`.
  Result feed(const std::string& in, std::size_t& off, Response& response,
              std::size_t& header_count);

  bool keep_alive() const { return keep_alive_; }
  // The idle time the server keeps the connection for ("Keep-Alive: timeout=N"), -1 if unsaid.
  int keep_alive_timeout_s() const { return keep_alive_timeout_s_; }
  // The body runs until the connection closes (it is complete then).
  bool until_close() const { return phase_ == Phase::UntilClose; }
  // Inside a Content-Length body: `remaining` bytes are missing.
  bool in_length_body() const { return phase_ == Phase::Body; }
  std::size_t remaining() const { return remaining_; }
  Failure failure() const { return failure_; }
  const char* message() const { return message_; }

 private:
  enum class Phase { Status, Headers, Body, ChunkSize, ChunkData, ChunkEnd, Trailer, UntilClose };
  Result fail(Failure failure, const char* message);
  bool head_fits(std::size_t line, std::size_t pending);

  Phase phase_ = Phase::Status;
  std::size_t remaining_ = 0;  // body or chunk bytes still expected
  std::size_t head_bytes_ = 0;
  bool chunked_ = false;
  bool has_length_ = false;
  bool keep_alive_ = true;
  int keep_alive_timeout_s_ = -1;
  bool interim_ = false;  // inside a 1xx response
  Failure failure_ = Failure::None;
  const char* message_ = "";
};

}  // namespace flare::net
