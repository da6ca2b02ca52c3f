#pragma once
// Structured errors from HTTP answers of the Fireworks protocol: code, status,
// whether retrying may help, the request id, and a message saying what failed
// and what to do. Messages never contain the API key.
#include <string>
#include <string_view>

#include "net/http_client.hpp"
#include "runtime/error.hpp"

namespace flare::fireworks {

// "not_found", "rate_limited", ... for an HTTP status; "http_<n>" otherwise.
std::string code_for_status(int status);
bool is_retryable_status(int status);  // 408, 425, 429, 500, 502, 503, 504

// Seconds from a Retry-After header (delta-seconds form); -1 when absent or unreadable.
double retry_after_s(const net::Headers& headers);

// `what` names the operation ("create deployment accounts/a/deployments/x").
// The server's {"error": {"code", "message"}} is quoted when present.
Error error_from_response(const net::Response& response, std::string_view what,
                          std::string_view api_key, std::string_view request_id = {});

// Prefixes a transport error with `what` and redacts the key.
Error error_from_transport(const Error& transport, std::string_view what, std::string_view api_key,
                           std::string_view request_id = {});

}  // namespace flare::fireworks
