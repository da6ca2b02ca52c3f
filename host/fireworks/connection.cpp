#include "fireworks/connection.hpp"

#include "runtime/error.hpp"

namespace flare::fireworks {
namespace {

void check_url(const std::string& url, const char* field) {
  auto scheme_end = url.find("://");
  std::string scheme = scheme_end == std::string::npos ? "" : url.substr(0, scheme_end);
  if ((scheme != "http" && scheme != "https") || url.size() == scheme_end + 3) {
    throw Error(
        "invalid_argument",
        std::string(field) + " must look like https://host[:port][/path], got '" + url + "'");
  }
}

std::string_view host_of(std::string_view url) {
  auto start = url.find("://");
  if (start == std::string_view::npos) return {};
  url.remove_prefix(start + 3);
  auto at = url.find('@');
  auto slash = url.find('/');
  if (at != std::string_view::npos && (slash == std::string_view::npos || at < slash))
    url.remove_prefix(at + 1);
  if (!url.empty() && url.front() == '[') {
    auto close = url.find(']');
    return url.substr(0, close == std::string_view::npos ? url.size() : close + 1);
  }
  auto end = url.find_first_of(":/?#");
  return url.substr(0, end);
}

bool is_ip_literal(std::string_view host) {
  if (host.empty()) return false;
  if (host.front() == '[') return true;
  int dots = 0;
  for (char c : host) {
    if (c == '.') {
      ++dots;
    } else if (c < '0' || c > '9') {
      return false;
    }
  }
  return dots == 3;
}

}  // namespace

std::string strip_trailing_slashes(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

void Connection::normalise() {
  base_url = strip_trailing_slashes(base_url);
  check_url(base_url, "base_url");
  inference_url = inference_url.empty() ? base_url : strip_trailing_slashes(inference_url);
  check_url(inference_url, "inference_url");
  hotload_api_url = hotload_api_url.empty() ? base_url : strip_trailing_slashes(hotload_api_url);
  check_url(hotload_api_url, "hotload_api_url");
}

const std::string& Connection::url_of(Plane plane) const {
  switch (plane) {
    case Plane::Inference:
      return inference_url.empty() ? base_url : inference_url;
    case Plane::Hotload:
      return hotload_api_url.empty() ? base_url : hotload_api_url;
    case Plane::Control:
    case Plane::Trainer:
      break;
  }
  return base_url;
}

void Connection::add_headers(net::Headers& headers, Plane plane, bool json_body) const {
  if (json_body) headers.add("Content-Type", "application/json");
  headers.add("X-Api-Key", api_key);
  if (plane != Plane::Control) headers.add("Authorization", "Bearer " + api_key);
  for (const auto& [name, value] : additional_headers) headers.add(name, value);
}

bool Connection::verify_tls(Plane plane) const {
  return verify_ssl < 0 ? default_verify_ssl(url_of(plane)) : verify_ssl != 0;
}

bool default_verify_ssl(std::string_view url) {
  if (!url.starts_with("https://")) return false;
  return !is_ip_literal(host_of(url));
}

}  // namespace flare::fireworks
