#include "fireworks/api_error.hpp"

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "fireworks/redact.hpp"

namespace flare::fireworks {
namespace {

std::string hint_for(int status, std::string_view server_code, std::string_view body) {
  if (body.find("DEPLOYMENT_SCALING_UP") != std::string_view::npos)
    return "the deployment is scaling up from zero; retry in a moment";
  if (server_code == "DEPLOYMENT_SCALED_TO_ZERO")
    return "raise max_replica_count (mgr:update) to serve requests";
  switch (status) {
    case 400:
      return "fix the request named above";
    case 401:
      return "check the API key (FIREWORKS_API_KEY) for this base_url";
    case 403:
      return "the API key has no access to this resource";
    case 404:
      return "check the id and the account; it may have been deleted";
    case 408:
    case 504:
      return "the server timed out; retry, or raise the timeout";
    case 409:
      return "it already exists or is busy; get it, or wait and retry";
    case 425:
      return "the deployment is not ready yet; wait_for_ready first";
    case 429:
      return "rate limited; lower the concurrency or retry later";
    default:
      break;
  }
  if (status >= 500) return "the server failed; retry later";
  return "";
}

}  // namespace

std::string code_for_status(int status) {
  switch (status) {
    case 400:
      return "invalid_argument";
    case 401:
      return "unauthenticated";
    case 403:
      return "permission_denied";
    case 404:
      return "not_found";
    case 408:
      return "timeout";
    case 409:
      return "already_exists";
    case 425:
      return "not_ready";
    case 429:
      return "rate_limited";
    case 500:
      return "internal";
    case 502:
      return "bad_gateway";
    case 503:
      return "unavailable";
    case 504:
      return "gateway_timeout";
    default:
      return "http_" + std::to_string(status);
  }
}

bool is_retryable_status(int status) {
  switch (status) {
    case 408:
    case 425:
    case 429:
    case 500:
    case 502:
    case 503:
    case 504:
      return true;
    default:
      return false;
  }
}

double retry_after_s(const net::Headers& headers) {
  const std::string* v = headers.find("Retry-After");
  if (!v || v->empty()) return -1;
  char* end = nullptr;
  double s = std::strtod(v->c_str(), &end);
  if (end == v->c_str() || *end != '\0' || s < 0) return -1;
  return s;
}

Error error_from_response(const net::Response& response, std::string_view what,
                          std::string_view api_key, std::string_view request_id) {
  std::string server_code, server_message;
  auto parsed = nlohmann::json::parse(response.body, nullptr, false);
  if (!parsed.is_discarded() && parsed.is_object()) {
    auto err = parsed.find("error");
    if (err != parsed.end() && err->is_object()) {
      if (err->contains("code") && (*err)["code"].is_string()) server_code = (*err)["code"];
      if (err->contains("message") && (*err)["message"].is_string())
        server_message = (*err)["message"];
    } else if (err != parsed.end() && err->is_string()) {
      server_message = err->get<std::string>();
    } else if (parsed.contains("message") && parsed["message"].is_string()) {
      server_message = parsed["message"];
    }
  } else if (!response.body.empty()) {
    server_message = response.body.substr(0, 300);
  }
  std::string message = std::string(what) + ": HTTP " + std::to_string(response.status);
  if (!server_code.empty()) message += " " + server_code;
  if (!server_message.empty()) message += ": " + server_message;
  std::string hint = hint_for(response.status, server_code, response.body);
  if (!hint.empty()) message += " (" + hint + ")";
  std::string rid(request_id);
  if (const std::string* h = response.headers.find("x-request-id")) rid = *h;
  return Error(code_for_status(response.status), redact_text(message, api_key), response.status,
               is_retryable_status(response.status), rid);
}

Error error_from_transport(const Error& transport, std::string_view what, std::string_view api_key,
                           std::string_view request_id) {
  std::string message = std::string(what) + ": " + transport.what();
  return Error(transport.code, redact_text(message, api_key), transport.status, transport.retryable,
               std::string(request_id));
}

}  // namespace flare::fireworks
