#include "net/direct_request.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstring>

#include "net/http1_parser.hpp"

namespace flare::net {

bool direct_target(Transfer* t) {
  const Request& r = t->request;
  if (r.method == "HEAD" || r.method == "CONNECT") return false;
  std::string_view url = r.url;
  if (!url.starts_with("http://")) return false;
  url.remove_prefix(7);
  std::size_t authority_end = 0;  // (find_first_of would call memchr per character)
  while (authority_end < url.size() && url[authority_end] != '/' && url[authority_end] != '?' &&
         url[authority_end] != '#')
    ++authority_end;
  if (authority_end == url.size()) authority_end = std::string_view::npos;
  std::string_view authority = url.substr(0, authority_end);
  std::string_view path = authority_end == std::string_view::npos ? "" : url.substr(authority_end);
  if (authority.empty() || authority.find('@') != std::string_view::npos) return false;
  if (path.find("/.") != std::string_view::npos || path.find('%') != std::string_view::npos)
    return false;
  std::string_view host = authority, port_text;
  if (authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return false;
    host = authority.substr(1, close - 1);
    std::string_view rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      port_text = rest.substr(1);
    }
  } else {
    auto colon = authority.find(':');
    if (colon != std::string_view::npos) {
      host = authority.substr(0, colon);
      port_text = authority.substr(colon + 1);
    }
  }
  unsigned port = 80;
  if (!port_text.empty()) {
    port = 0;
    for (char c : port_text) {
      if (c < '0' || c > '9' || port > 65535) return false;
      port = port * 10 + static_cast<unsigned>(c - '0');
    }
    if (port == 0 || port > 65535) return false;
  }
  char host_buf[64];
  if (host.empty() || host.size() >= sizeof host_buf) return false;
  std::memcpy(host_buf, host.data(), host.size());
  host_buf[host.size()] = '\0';
  t->addr = {};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&t->addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&t->addr);
  if (inet_pton(AF_INET, host_buf, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<std::uint16_t>(port));
    t->addr_len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, host_buf, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<std::uint16_t>(port));
    t->addr_len = sizeof(sockaddr_in6);
  } else {
    return false;
  }
  for (const auto& [name, value] : r.headers.items) {
    if (iequals(name, "Content-Length") || iequals(name, "Transfer-Encoding") ||
        iequals(name, "Expect") || iequals(name, "Host"))
      return false;
  }
  t->key.assign(authority);
  return true;
}

// The request as libcurl would write it (Host, Accept, the caller's
// headers, Content-Length, a default Content-Type for bodies).
void write_request(const Request& r, std::string_view authority, std::string& out) {
  std::string_view url = r.url;
  url.remove_prefix(7 + authority.size());
  url = url.substr(0, url.find('#'));
  out.clear();
  out.append(r.method);
  out.push_back(' ');
  if (url.empty() || url.front() != '/') out.push_back('/');
  out.append(url);
  out.append(" HTTP/1.1\r\nHost: ");
  out.append(authority);
  out.append("\r\n");
  if (!r.headers.find("Accept")) out.append("Accept: */*\r\n");
  bool has_body = !r.body.empty() || r.method == "POST" || r.method == "PUT" || r.method == "PATCH";
  for (const auto& [name, value] : r.headers.items) {
    out.append(name);
    out.append(value.empty() ? ":" : ": ");
    out.append(value);
    out.append("\r\n");
  }
  if (has_body) {
    if (!r.headers.find("Content-Type")) out.append("Content-Type: application/octet-stream\r\n");
    char digits[24];
    auto end = std::to_chars(digits, digits + sizeof digits, r.body.size()).ptr;
    out.append("Content-Length: ");
    out.append(digits, end);
    out.append("\r\n");
  }
  out.append("\r\n");
  if (has_body) out.append(r.body);
}

}  // namespace flare::net
