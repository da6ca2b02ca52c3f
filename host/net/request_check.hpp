#pragma once
// Checks a request before anything is sent, and the wording of request errors.
#include <string>
#include <string_view>

#include "net/http_client.hpp"

namespace flare::net {

// Throws flare::Error ("bad_url" or "bad_request") naming the method, the URL
// and the offending part; never includes a header value.
void check_request(const Request& request);

// Maps a libcurl result to a flare::Error code and whether retrying may help.
struct TransportFailure {
  const char* code;
  bool retryable;
};
TransportFailure classify_curl_code(int curl_code);

}  // namespace flare::net
