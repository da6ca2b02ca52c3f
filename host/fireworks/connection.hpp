#pragma once
// Where and how to reach the Fireworks REST protocol (or flare's emulator):
// the three base URLs, the key, extra headers and timeouts, and the headers
// each kind of request carries (docs/protocol.md).
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "net/http_client.hpp"

namespace flare::fireworks {

enum class Plane {
  Control,    // X-Api-Key
  Inference,  // X-Api-Key + Authorization: Bearer
  Hotload,    // X-Api-Key + Authorization: Bearer (+ fireworks-model/-deployment from the caller)
  Trainer,    // the trainer gateway under base_url; both auth headers
};

struct Connection {
  std::string api_key;
  std::string base_url = "https://api.fireworks.ai";
  std::string inference_url;    // "" = base_url
  std::string hotload_api_url;  // "" = base_url
  std::vector<std::pair<std::string, std::string>> additional_headers;
  double timeout_s = 60;
  double connect_timeout_s = 10;
  int verify_ssl = -1;  // -1 = the protocol's default for each URL (default_verify_ssl), else 0/1

  // Strips trailing slashes and fills the defaulted URLs; throws flare::Error
  // "invalid_argument" naming the field when a URL is not http(s)://host.
  void normalise();
  const std::string& url_of(Plane plane) const;
  // The protocol's headers for `plane`, then additional_headers.
  void add_headers(net::Headers& headers, Plane plane, bool json_body) const;
  bool verify_tls(Plane plane) const;
};

// TLS verification default: on for https URLs whose host is a name; off for
// http and for bare IPv4/IPv6 addresses.
bool default_verify_ssl(std::string_view url);

std::string strip_trailing_slashes(std::string url);

}  // namespace flare::fireworks
