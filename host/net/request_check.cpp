#include "net/request_check.hpp"

#include <curl/curl.h>

#include <array>
#include <cctype>

#include "text/escape.hpp"

namespace flare::net {
namespace {

using text::printable;

// RFC 9110 tchar, as a table (checked for every byte of every header name).
constexpr auto kTokenChars = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();

bool is_token_char(unsigned char c) {
  return kTokenChars[c];
}

bool has_line_break(std::string_view s) {
  // A plain loop: find_first_of would call memchr once per character.
  for (char c : s)
    if (c == '\r' || c == '\n' || c == '\0') return true;
  return false;
}

[[noreturn]] void fail(const Request& r, const char* code, const std::string& what) {
  throw Error(code, describe_request(r.method, r.url) + ": " + what);
}

}  // namespace

std::string describe_request(std::string_view method, std::string_view url) {
  // Drop "user:password@" from the authority so credentials never reach a message.
  std::string shown(url);
  auto scheme_end = shown.find("://");
  if (scheme_end != std::string::npos) {
    auto authority = scheme_end + 3;
    auto authority_end = shown.find_first_of("/?#", authority);
    auto at = shown.rfind('@', authority_end == std::string::npos ? shown.size() : authority_end);
    if (at != std::string::npos && at >= authority) shown.erase(authority, at + 1 - authority);
  }
  return printable(method) + " " + printable(shown);
}

void check_request(const Request& r) {
  if (r.method.empty()) fail(r, "bad_request", "method is empty");
  for (unsigned char c : r.method)
    if (!is_token_char(c)) fail(r, "bad_request", "method is not a valid HTTP method token");

  if (r.url.empty()) fail(r, "bad_url", "url is empty");
  for (unsigned char c : r.url)
    if (c <= 0x20 || c == 0x7f) fail(r, "bad_url", "url contains a space or control character");
  auto colon = r.url.find("://");
  if (colon == std::string::npos || colon == 0)
    fail(r, "bad_url", "url has no scheme (expected http:// or https://)");
  std::string_view url = r.url;
  bool known = url.starts_with("http://") || url.starts_with("https://");
  std::string scheme;
  if (!known) {  // the scheme is case-insensitive
    scheme = r.url.substr(0, colon);
    for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  if (!known && scheme != "http" && scheme != "https")
    fail(r, "bad_url", "bad scheme \"" + printable(scheme) + "\" (expected http or https)");
  if (colon + 3 >= r.url.size() || r.url[colon + 3] == '/') fail(r, "bad_url", "url has no host");

  for (const auto& [name, value] : r.headers.items) {
    if (has_line_break(name)) fail(r, "bad_request", "a header name contains a newline");
    if (name.empty()) fail(r, "bad_request", "a header name is empty");
    for (unsigned char c : name)
      if (!is_token_char(c))
        fail(r, "bad_request", "header \"" + printable(name) + "\" has an invalid name");
    if (has_line_break(value)) fail(r, "bad_request", "header \"" + name + "\" contains a newline");
  }
}

TransportFailure classify_curl_code(int curl_code) {
  switch (static_cast<CURLcode>(curl_code)) {
    case CURLE_OPERATION_TIMEDOUT:
      return {"timeout", true};
    case CURLE_COULDNT_CONNECT:
      return {"connect_failed", true};
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return {"resolve_failed", true};
    case CURLE_URL_MALFORMAT:
      return {"bad_url", false};
    // check_request admits http and https only: at transfer time this is a
    // reply that is not HTTP ("Received HTTP/0.9 when not allowed").
    case CURLE_UNSUPPORTED_PROTOCOL:
      return {"transport_failed", false};
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
      return {"connection_reset", true};
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
      return {"tls_failed", false};
    case CURLE_OUT_OF_MEMORY:
      return {"out_of_memory", false};
    default:
      return {"transport_failed", false};
  }
}

}  // namespace flare::net
