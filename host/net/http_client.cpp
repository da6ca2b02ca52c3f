#include "net/http_client.hpp"

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <limits>
#include <system_error>
#include <unordered_map>

#include "net/libcurl.hpp"
#include "net/request_check.hpp"
#include "runtime/interrupt.hpp"

namespace flare::net {
namespace {

constexpr int kMaxPollMs = 100;  // safety net; the interrupt pipe wakes the poll at once

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

enum class State { Free, Running, Finished, Delivering };

// The options a transfer sets beyond the ones every transfer shares: when the
// next request on the same easy handle has the same mode, only the URL, the
// body and the header list are set again.
struct Mode {
  std::string method;
  bool has_body = false;
  long timeout_ms = -1;
  long connect_timeout_ms = -1;
  bool verify_tls = true;
  bool operator==(const Mode&) const = default;
};

struct DirectConn;

struct Transfer {
  RequestId id = 0;
  std::uint32_t index = 0;  // position in HttpClient::Impl::slots
  State state = State::Free;
  CURL* easy = nullptr;  // owned by the slot for its whole life
  bool configured = false;
  Mode mode;                             // what `easy` is configured for
  std::string configured_url;            // the URL last set on `easy`
  std::string header_text;               // header lines, each ending in '\0'
  std::vector<curl_slist> header_nodes;  // list over header_text (not libcurl's allocations)
  std::size_t header_count = 0;          // response headers of the current response
  CURLcode result = CURLE_OK;
  Request request;
  Response response;
  DoneCallback on_done;
  char error_buffer[CURL_ERROR_SIZE] = {};
  // Direct transfers (see DirectConn) instead of libcurl:
  bool direct = false;
  bool direct_retried = false;  // already retried once on a fresh connection
  int reconnects = 0;           // new connections after a handshake the server dropped
  bool waiting = false;         // queued for a connection (Impl::Host::waiting)
  DirectConn* conn = nullptr;   // the connection carrying it
  std::uint64_t new_connections = 0;
  std::chrono::steady_clock::time_point started, deadline, connect_deadline;
  std::string key;  // "host:port" of its URL: the pool it takes connections from
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
};

// A plain-HTTP/1.1 keep-alive connection of flare's own (no libcurl), for
// http:// URLs to an IP address when no proxy is configured: one request at a
// time, the response read with Content-Length, chunked coding or until close.
struct DirectConn {
  enum class Phase { Status, Headers, Body, ChunkSize, ChunkData, ChunkEnd, Trailer, UntilClose };
  int fd = -1;
  std::string key;
  std::uint32_t events = 0;  // registered in epoll
  bool connecting = false;
  bool reused = false;   // served a response before this one
  bool opening = false;  // counted in Host::opening (the server may not have it yet)
  std::chrono::steady_clock::time_point sent_at;  // when the request was all out
  Transfer* t = nullptr;
  std::string out;  // request bytes
  std::size_t out_off = 0;
  std::string in;  // received, not yet parsed
  std::size_t in_off = 0;
  Phase phase = Phase::Status;
  std::size_t remaining = 0;  // body or chunk bytes still expected
  bool chunked = false;
  bool has_length = false;
  bool keep_alive = true;
  bool http10 = false;
  bool got_bytes = false;
  bool interim = false;        // inside a 1xx response
  std::size_t head_bytes = 0;  // status line and headers of the current response
};

// Response heads larger than this are refused (libcurl's limit is about the same).
constexpr std::size_t kMaxHeadBytes = 300 * 1024;

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  t->response.body.append(data, size * n);
  return size * n;
}

// Assigns into the strings of earlier responses: they keep their capacity.
void add_response_header(Transfer* t, std::string_view name, std::string_view value) {
  auto& items = t->response.headers.items;
  if (t->header_count < items.size()) {
    items[t->header_count].first.assign(name);
    items[t->header_count].second.assign(value);
  } else {
    items.emplace_back(std::string(name), std::string(value));
  }
  ++t->header_count;
}

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * n);
  if (line.starts_with("HTTP/")) {
    // A new response begins (after 100 Continue or a redirect): forget the old headers.
    t->header_count = 0;
    return line.size();
  }
  auto colon = line.find(':');
  if (colon == std::string_view::npos) return line.size();
  auto name = trim(line.substr(0, colon));
  auto value = trim(line.substr(colon + 1));
  if (iequals(name, "content-length")) {
    std::size_t length = 0;
    for (char c : value) {
      if (c < '0' || c > '9') break;
      length = length * 10 + static_cast<std::size_t>(c - '0');
    }
    if (length < (std::size_t{1} << 32)) t->response.body.reserve(length);
  }
  add_response_header(t, name, value);
  return line.size();
}

long to_ms(double seconds) {
  if (seconds <= 0) return 0;
  double ms = seconds * 1000.0;
  if (ms < 1) return 1;
  if (ms > static_cast<double>(std::numeric_limits<long>::max() / 2))
    return std::numeric_limits<long>::max() / 2;
  return static_cast<long>(ms);
}

using steady = std::chrono::steady_clock;

}  // namespace

const std::string* Headers::find(std::string_view name) const {
  for (const auto& item : items)
    if (iequals(item.first, name)) return &item.second;
  return nullptr;
}

struct HttpClient::Impl {
  CURLM* multi = nullptr;
  int epoll_fd = -1;
  int wake_fd = -1;
  // Per file descriptor: the events registered in epoll_fd (0 = none) and
  // whether libcurl currently wants them. A socket libcurl stops watching
  // (an idle keep-alive connection) stays registered until it reports an
  // event, so reusing the connection costs no epoll_ctl.
  std::vector<std::uint32_t> registered;
  std::vector<bool> wanted;
  bool timer_armed = false;
  steady::time_point timer_due;
  std::vector<std::unique_ptr<Transfer>> slots;
  std::vector<std::uint32_t> free_slots;
  std::deque<Transfer*> finished;  // done in libcurl, callback not yet run
  std::uint64_t next_sequence = 1;
  std::size_t active = 0;
  ClientStats stats;

  Transfer* lookup(RequestId id) const {
    auto index = static_cast<std::uint32_t>(id & 0xffffffffu);
    if (index >= slots.size()) return nullptr;
    Transfer* t = slots[index].get();
    return t->id == id && (t->state == State::Running || t->state == State::Finished) ? t : nullptr;
  }

  Transfer* acquire() {
    std::uint32_t index;
    if (!free_slots.empty()) {
      index = free_slots.back();
      free_slots.pop_back();
    } else {
      index = static_cast<std::uint32_t>(slots.size());
      auto t = std::make_unique<Transfer>();
      t->index = index;
      t->easy = libcurl().easy_init();
      if (!t->easy) throw Error("out_of_memory", "curl_easy_init failed");
      slots.push_back(std::move(t));
    }
    Transfer* t = slots[index].get();
    t->id = (next_sequence++ << 32) | index;
    return t;
  }

  void release(Transfer* t) {
    t->on_done = nullptr;
    // Strings are cleared, not freed: the next request in this slot reuses them.
    t->request.body.clear();
    t->response.body.clear();
    t->header_count = 0;
    t->state = State::Free;
    t->id = 0;
    free_slots.push_back(t->index);
    --active;
  }

  // The options every transfer shares; set once per easy handle (and after a reset).
  void configure_common(Transfer* t) {
    CURL* e = t->easy;
    // Sockets leave the epoll set before libcurl closes them (see `registered`).
    libcurl().easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, &Impl::on_close_socket);
    libcurl().easy_setopt(e, CURLOPT_CLOSESOCKETDATA, this);
    libcurl().easy_setopt(e, CURLOPT_PRIVATE, t);
    libcurl().easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    libcurl().easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    libcurl().easy_setopt(e, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
    libcurl().easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    libcurl().easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    libcurl().easy_setopt(e, CURLOPT_ERRORBUFFER, t->error_buffer);
    libcurl().easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    libcurl().easy_setopt(e, CURLOPT_WRITEDATA, t);
    libcurl().easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    libcurl().easy_setopt(e, CURLOPT_HEADERDATA, t);
  }

  void configure(Transfer* t) {
    CURL* e = t->easy;
    const Request& r = t->request;
    Mode mode{r.method,
              !r.body.empty() || r.method == "POST" || r.method == "PUT" || r.method == "PATCH",
              to_ms(r.timeout_s), to_ms(r.connect_timeout_s), r.verify_tls};
    if (!t->configured || !(mode == t->mode)) {
      // A different kind of request: start from libcurl's defaults, as a new handle would.
      if (t->configured) libcurl().easy_reset(e);
      configure_common(t);
      libcurl().easy_setopt(e, CURLOPT_TIMEOUT_MS, mode.timeout_ms);
      libcurl().easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, mode.connect_timeout_ms);
      libcurl().easy_setopt(e, CURLOPT_SSL_VERIFYPEER, r.verify_tls ? 1L : 0L);
      libcurl().easy_setopt(e, CURLOPT_SSL_VERIFYHOST, r.verify_tls ? 2L : 0L);
      if (r.method == "GET" && r.body.empty()) {
        libcurl().easy_setopt(e, CURLOPT_HTTPGET, 1L);
      } else if (r.method == "HEAD") {
        libcurl().easy_setopt(e, CURLOPT_NOBODY, 1L);
      } else if (r.method != "POST") {
        libcurl().easy_setopt(e, CURLOPT_CUSTOMREQUEST, r.method.c_str());
      }
      t->mode = std::move(mode);
      t->configured = true;
      t->configured_url.clear();
    }
    if (t->configured_url != r.url) {
      libcurl().easy_setopt(e, CURLOPT_URL, r.url.c_str());  // libcurl copies it
      t->configured_url = r.url;
    }
    if (t->mode.has_body && r.method != "HEAD") {
      libcurl().easy_setopt(e, CURLOPT_POSTFIELDS, r.body.data());
      libcurl().easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
    }

    // The header list lives in the transfer's own buffers (reused, no
    // allocation once warm); libcurl only reads it while the transfer runs.
    std::string& text = t->header_text;
    text.clear();
    std::size_t lines = 0;
    for (const auto& [name, value] : r.headers.items) {
      text.append(name);
      // "Name;" is libcurl's way to send a header with an empty value.
      text.append(value.empty() ? ";" : ": ");
      text.append(value);
      text.push_back('\0');
      ++lines;
    }
    if (t->mode.has_body) {
      // A round trip for "Expect: 100-continue" only costs latency on APIs we talk to.
      text.append("Expect:", 8);
      ++lines;
      // libcurl would label the body as a form; raw bytes are the honest default.
      if (!r.headers.find("Content-Type")) {
        static constexpr char kType[] = "Content-Type: application/octet-stream";
        text.append(kType, sizeof kType);
        ++lines;
      }
    }
    t->header_nodes.resize(lines);
    char* p = text.data();
    for (std::size_t i = 0; i < lines; ++i) {
      t->header_nodes[i].data = p;
      t->header_nodes[i].next = i + 1 < lines ? &t->header_nodes[i + 1] : nullptr;
      p += std::strlen(p) + 1;
    }
    libcurl().easy_setopt(e, CURLOPT_HTTPHEADER, lines ? t->header_nodes.data() : nullptr);
  }

  // --- direct transfers (plain HTTP/1.1 without libcurl) ----------------------------------

  std::vector<DirectConn*> direct_by_fd;  // fd -> its connection
  // Per "host:port": idle keep-alive connections, the new connections the
  // server may not have accepted yet, and the transfers waiting for one of
  // them. New connections open a few at a time: a burst of connects overflows
  // a small listen backlog (httplib's is 5), and a connection whose handshake
  // the server dropped looks established here while TCP retransmits for
  // seconds. A new connection counts as accepted once the server's TCP has
  // acknowledged the request (nothing left in our send queue) or answered.
  struct Host {
    std::vector<DirectConn*> idle;
    std::vector<DirectConn*> opening;
    std::deque<Transfer*> waiting;
  };
  static constexpr std::size_t kMaxOpening = 4;
  static constexpr auto kStuckAfter = std::chrono::seconds(1);
  static constexpr int kMaxReconnects = 3;
  std::unordered_map<std::string, Host> hosts;
  std::size_t idle_count = 0;
  std::size_t opening_total = 0;  // over all hosts
  std::size_t waiting_total = 0;
  steady::time_point next_stuck_check = steady::time_point::min();
  std::vector<Transfer*> direct_running;                           // for their deadlines
  steady::time_point direct_next_due = steady::time_point::min();  // see direct_timeouts
  bool direct_enabled = true;      // false: every request goes through libcurl
  bool connection_limits = false;  // max_host/max_total set: libcurl enforces them
  // A proxy variable was set when the client was made: libcurl applies it
  // (and no_proxy). flare never changes its environment while it runs.
  bool proxy_env = false;
  long max_idle = 256;

  static bool proxy_configured() {
    for (const char* name : {"http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"}) {
      const char* v = std::getenv(name);
      if (v && *v) return true;
    }
    return false;
  }

  // Whether `t` can go direct: http:// to an IP literal, no credentials, no
  // proxy, no limits to enforce, a path libcurl would send as it is, and no
  // header that changes the framing. Fills t->key and t->addr.
  bool direct_eligible(Transfer* t) {
    const Request& r = t->request;
    if (!direct_enabled || proxy_env || connection_limits || r.method == "HEAD" ||
        r.method == "CONNECT")
      return false;
    std::string_view url = r.url;
    if (!url.starts_with("http://")) return false;
    url.remove_prefix(7);
    std::size_t authority_end = 0;  // (find_first_of would call memchr per character)
    while (authority_end < url.size() && url[authority_end] != '/' && url[authority_end] != '?' &&
           url[authority_end] != '#')
      ++authority_end;
    if (authority_end == url.size()) authority_end = std::string_view::npos;
    std::string_view authority = url.substr(0, authority_end);
    std::string_view path =
        authority_end == std::string_view::npos ? "" : url.substr(authority_end);
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
  static void write_request(const Request& r, std::string_view authority, std::string& out) {
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
    bool has_body =
        !r.body.empty() || r.method == "POST" || r.method == "PUT" || r.method == "PATCH";
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

  void direct_register(DirectConn* c, std::uint32_t events) {
    if (c->events == events) return;
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = c->fd;
    epoll_ctl(epoll_fd, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev);
    c->events = events;
  }

  // Closes a connection that is neither idle nor carrying a transfer.
  void direct_close(DirectConn* c, bool dispatch = true) {
    if (c->fd >= 0) {
      epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c->fd, nullptr);
      direct_by_fd[static_cast<std::size_t>(c->fd)] = nullptr;
      close(c->fd);
    }
    bool was_opening = c->opening;
    settle(c);
    std::string key = std::move(c->key);
    delete c;
    if (was_opening && dispatch) dispatch_waiting(key);
  }

  // The server has the connection (or it is gone): it no longer counts as opening.
  void settle(DirectConn* c) {
    if (!c->opening) return;
    c->opening = false;
    auto& list = hosts[c->key].opening;
    list.erase(std::find(list.begin(), list.end(), c));
    --opening_total;
  }

  // Settles the opening connections whose request the server's TCP has
  // acknowledged; restarts transfers whose connection was never accepted.
  void check_opening(Host& h, bool restart_stuck) {
    auto now = steady::now();
    std::vector<DirectConn*> list = h.opening;
    for (DirectConn* c : list) {
      if (c->connecting || c->out_off == 0) continue;
      int unacked = 0;
      if (ioctl(c->fd, SIOCOUTQ, &unacked) != 0) continue;
      if (static_cast<std::size_t>(unacked) < c->out_off) {
        // Some of the request was acknowledged: the server has the connection
        // (it may read the rest late: never send such a request again).
        settle(c);
      } else if (restart_stuck && c->out_off == c->out.size() && now - c->sent_at > kStuckAfter &&
                 c->t && c->t->reconnects < kMaxReconnects && !c->got_bytes) {
        // Not one byte acknowledged: the server dropped the handshake, and has
        // not seen the request. Send it again on a new connection.
        Transfer* t = c->t;
        ++t->reconnects;
        t->conn = nullptr;
        c->t = nullptr;
        direct_close(c, false);
        direct_start(t);
      }
    }
  }

  void check_all_opening() {
    for (auto& [key, h] : hosts)
      if (!h.opening.empty()) check_opening(h, true);
    for (auto& [key, h] : hosts)
      if (!h.waiting.empty()) dispatch_waiting(key);
  }

  // Gives waiting transfers the connections that became available.
  void dispatch_waiting(const std::string& key) {
    Host& h = hosts[key];
    while (!h.waiting.empty() && (!h.idle.empty() || h.opening.size() < kMaxOpening)) {
      Transfer* t = h.waiting.front();
      h.waiting.pop_front();
      --waiting_total;
      t->waiting = false;
      direct_start(t);
    }
  }

  void take_from_idle(DirectConn* c) {
    auto& list = hosts[c->key].idle;
    auto pos = std::find(list.begin(), list.end(), c);
    if (pos == list.end()) return;
    list.erase(pos);
    --idle_count;
  }

  void stop_waiting(Transfer* t) {
    if (!t->waiting) return;
    auto& q = hosts[t->key].waiting;
    q.erase(std::find(q.begin(), q.end(), t));
    --waiting_total;
    t->waiting = false;
  }

  // Starts (or restarts, after a stale keep-alive connection) a direct transfer.
  void direct_start(Transfer* t) {
    DirectConn* c = nullptr;
    Host& h = hosts[t->key];
    if (!h.idle.empty()) {
      c = h.idle.back();
      h.idle.pop_back();
      --idle_count;
    } else if (h.opening.size() >= kMaxOpening &&
               (check_opening(h, false), h.idle.empty() && h.opening.size() >= kMaxOpening)) {
      h.waiting.push_back(t);
      ++waiting_total;
      t->waiting = true;
      return;
    } else if (!h.idle.empty()) {
      c = h.idle.back();
      h.idle.pop_back();
      --idle_count;
    } else {
      int fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) {
        direct_fail(t, CURLE_COULDNT_CONNECT, std::string("socket: ") + std::strerror(errno));
        return;
      }
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
      c = new DirectConn();
      c->fd = fd;
      c->key = t->key;
      c->opening = true;
      h.opening.push_back(c);
      ++opening_total;
      if (direct_by_fd.size() <= static_cast<std::size_t>(fd))
        direct_by_fd.resize(static_cast<std::size_t>(fd) + 1, nullptr);
      direct_by_fd[static_cast<std::size_t>(fd)] = c;
      ++t->new_connections;
      t->connect_deadline =
          steady::now() + std::chrono::milliseconds(t->request.connect_timeout_s > 0
                                                        ? to_ms(t->request.connect_timeout_s)
                                                        : 300000);
      direct_next_due = std::min(direct_next_due, t->connect_deadline);
      int rc = connect(fd, reinterpret_cast<const sockaddr*>(&t->addr), t->addr_len);
      if (rc != 0 && errno != EINPROGRESS) {
        int err = errno;
        c->t = t;
        t->conn = c;
        direct_fail(t, CURLE_COULDNT_CONNECT, connect_message(t, err));
        return;
      }
      c->connecting = rc != 0;
    }
    c->t = t;
    t->conn = c;
    c->phase = DirectConn::Phase::Status;
    c->in.clear();
    c->in_off = 0;
    c->got_bytes = false;
    c->interim = false;
    write_request(t->request, t->key, c->out);
    c->out_off = 0;
    if (c->connecting) {
      direct_register(c, EPOLLOUT);
      return;
    }
    direct_send(c);
  }

  std::string connect_message(const Transfer* t, int err) const {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t->started);
    std::string host = t->key.substr(0, t->key.rfind(':'));
    std::string port =
        t->key.rfind(':') == std::string::npos ? "80" : t->key.substr(t->key.rfind(':') + 1);
    return "Failed to connect to " + host + " port " + port + " after " +
           std::to_string(ms.count()) + " ms: " + std::strerror(err);
  }

  // Sends what is left of the request; true when all of it is out and c is
  // still this transfer's (false: waiting for the socket, failed, or retried).
  bool direct_send(DirectConn* c) {
    while (c->out_off < c->out.size()) {
      ssize_t n = send(c->fd, c->out.data() + c->out_off, c->out.size() - c->out_off, MSG_NOSIGNAL);
      if (n > 0) {
        c->out_off += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        direct_register(c, EPOLLIN | EPOLLOUT);
        return false;
      }
      int err = n < 0 ? errno : EPIPE;
      if (!retry_stale(c))
        direct_fail(c->t, CURLE_SEND_ERROR, std::string("Send failure: ") + std::strerror(err));
      return false;
    }
    c->sent_at = steady::now();
    direct_register(c, EPOLLIN);
    return true;
  }

  // A reused keep-alive connection that the server closed before answering:
  // the request goes again on a fresh one (as libcurl does), once.
  bool retry_stale(DirectConn* c) {
    Transfer* t = c->t;
    if (!c->reused || c->got_bytes || t->direct_retried) return false;
    t->direct_retried = true;
    t->conn = nullptr;
    direct_close(c);
    direct_start(t);
    return true;
  }

  void direct_event(DirectConn* c, std::uint32_t events) {
    if (!c->t) {  // idle: the server closed it (or spoke out of turn)
      take_from_idle(c);
      direct_close(c);
      return;
    }
    if (c->connecting) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        direct_fail(c->t, CURLE_COULDNT_CONNECT, connect_message(c->t, err));
        return;
      }
      if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
      c->connecting = false;
    }
    if (c->out_off < c->out.size() && !direct_send(c)) return;
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) direct_read(c);
  }

  void direct_read(DirectConn* c) {
    char buf[16384];
    for (;;) {
      ssize_t n = recv(c->fd, buf, sizeof buf, 0);
      if (n > 0) {
        c->got_bytes = true;
        c->in.append(buf, static_cast<std::size_t>(n));
        if (!direct_parse(c)) return;                          // finished or failed: c may be gone
        if (static_cast<std::size_t>(n) < sizeof buf) return;  // drained (level-triggered)
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      // End of stream or an error.
      int err = n < 0 ? errno : 0;
      if (retry_stale(c)) return;
      if (c->phase == DirectConn::Phase::UntilClose) {
        c->keep_alive = false;
        direct_done(c);
        return;
      }
      if (err) {
        direct_fail(c->t, CURLE_RECV_ERROR, std::string("Recv failure: ") + std::strerror(err));
      } else if (!c->got_bytes) {
        direct_fail(c->t, CURLE_GOT_NOTHING, "Empty reply from server");
      } else if (c->phase == DirectConn::Phase::Body) {
        direct_fail(
            c->t, CURLE_PARTIAL_FILE,
            "transfer closed with " + std::to_string(c->remaining) + " bytes remaining to read");
      } else {
        direct_fail(c->t, CURLE_PARTIAL_FILE, "transfer closed before the response was complete");
      }
      return;
    }
  }

  // Takes one line (without its CR LF) from the input, if complete.
  static bool take_line(DirectConn* c, std::string_view& line) {
    auto nl = c->in.find('\n', c->in_off);
    if (nl == std::string::npos) return false;
    line = std::string_view(c->in).substr(c->in_off, nl - c->in_off);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    c->in_off = nl + 1;
    return true;
  }

  // Parses what arrived; false when the transfer ended (finished or failed).
  bool direct_parse(DirectConn* c) {
    using Phase = DirectConn::Phase;
    Transfer* t = c->t;
    for (;;) {
      std::string_view line;
      switch (c->phase) {
        case Phase::Status: {
          if (!take_line(c, line)) return head_fits(c, 0) && keep_input(c);
          c->head_bytes = 0;
          if (!head_fits(c, line.size() + 2)) return false;
          // "HTTP/1.1 200 OK"
          if (line.size() < 12 || !line.starts_with("HTTP/1.") || line[8] != ' ' || line[9] < '1' ||
              line[9] > '5' || line[10] < '0' || line[10] > '9' || line[11] < '0' ||
              line[11] > '9' || (line.size() > 12 && line[12] != ' ')) {
            c->keep_alive = false;
            direct_fail(t, CURLE_WEIRD_SERVER_REPLY, "Unsupported HTTP version or bad status line");
            return false;
          }
          t->response.status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
          c->http10 = line[7] == '0';
          c->keep_alive = !c->http10;
          c->interim = t->response.status < 200;
          c->chunked = false;
          c->has_length = false;
          c->remaining = 0;
          t->header_count = 0;
          c->phase = Phase::Headers;
          break;
        }
        case Phase::Headers: {
          if (!take_line(c, line)) return head_fits(c, 0) && keep_input(c);
          if (!head_fits(c, line.size() + 2)) return false;
          if (!line.empty()) {
            auto colon = line.find(':');
            if (colon == std::string_view::npos) {  // as libcurl
              c->keep_alive = false;
              direct_fail(t, CURLE_WEIRD_SERVER_REPLY, "Header without colon");
              return false;
            }
            auto name = trim(line.substr(0, colon));
            auto value = trim(line.substr(colon + 1));
            if (iequals(name, "content-length")) {
              std::size_t length = 0;
              auto r = std::from_chars(value.data(), value.data() + value.size(), length);
              if (r.ec != std::errc() || r.ptr != value.data() + value.size()) {
                c->keep_alive = false;
                direct_fail(t, CURLE_WEIRD_SERVER_REPLY, "Invalid Content-Length: value");
                return false;
              }
              c->has_length = true;
              c->remaining = length;
            } else if (iequals(name, "transfer-encoding")) {
              if (value.find("chunked") != std::string_view::npos) c->chunked = true;
            } else if (iequals(name, "connection")) {
              if (iequals(value, "close")) c->keep_alive = false;
              if (iequals(value, "keep-alive")) c->keep_alive = true;
            }
            if (!c->interim) add_response_header(t, name, value);
            break;
          }
          if (c->interim) {  // 100 Continue and the like: the real response follows
            c->phase = Phase::Status;
            break;
          }
          int status = t->response.status;
          if (status == 204 || status == 304) {
            direct_done(c);
            return false;
          }
          if (c->chunked) {
            c->phase = Phase::ChunkSize;
          } else if (c->has_length) {
            if (c->remaining < (std::size_t{1} << 32)) t->response.body.reserve(c->remaining);
            c->phase = Phase::Body;
          } else {
            c->keep_alive = false;
            c->phase = Phase::UntilClose;
          }
          break;
        }
        case Phase::Body: {
          std::size_t have = c->in.size() - c->in_off;
          std::size_t take = std::min(have, c->remaining);
          t->response.body.append(c->in, c->in_off, take);
          c->in_off += take;
          c->remaining -= take;
          if (c->remaining > 0) return keep_input(c);
          direct_done(c);
          return false;
        }
        case Phase::UntilClose: {
          t->response.body.append(c->in, c->in_off);
          c->in_off = c->in.size();
          return keep_input(c);
        }
        case Phase::ChunkSize: {
          if (!take_line(c, line)) return keep_input(c);
          line = line.substr(0, line.find(';'));
          line = trim(line);
          std::size_t size = 0;
          auto r = std::from_chars(line.data(), line.data() + line.size(), size, 16);
          if (line.empty() || r.ec != std::errc() || r.ptr != line.data() + line.size()) {
            c->keep_alive = false;
            direct_fail(t, CURLE_RECV_ERROR, "invalid chunk size in the response");
            return false;
          }
          c->remaining = size;
          c->phase = size == 0 ? Phase::Trailer : Phase::ChunkData;
          break;
        }
        case Phase::ChunkData: {
          std::size_t have = c->in.size() - c->in_off;
          std::size_t take = std::min(have, c->remaining);
          t->response.body.append(c->in, c->in_off, take);
          c->in_off += take;
          c->remaining -= take;
          if (c->remaining > 0) return keep_input(c);
          c->phase = Phase::ChunkEnd;
          break;
        }
        case Phase::ChunkEnd: {
          if (!take_line(c, line)) return keep_input(c);
          if (!line.empty()) {
            c->keep_alive = false;
            direct_fail(t, CURLE_RECV_ERROR, "malformed chunked encoding in the response");
            return false;
          }
          c->phase = Phase::ChunkSize;
          break;
        }
        case Phase::Trailer: {
          if (!take_line(c, line)) return keep_input(c);
          if (line.empty()) {
            direct_done(c);
            return false;
          }
          break;
        }
      }
    }
  }

  // Counts a `line` of the response head (0: none complete, then the
  // incomplete line waiting in the input counts); false (the transfer
  // failed) once the head is over kMaxHeadBytes.
  bool head_fits(DirectConn* c, std::size_t line) {
    c->head_bytes += line;
    std::size_t pending = line ? 0 : c->in.size() - c->in_off;
    if (c->head_bytes + pending <= kMaxHeadBytes) return true;
    c->keep_alive = false;
    direct_fail(c->t, CURLE_WEIRD_SERVER_REPLY,
                "response headers larger than " + std::to_string(kMaxHeadBytes / 1024) + " KB");
    return false;
  }

  // Drops the parsed prefix of the input buffer; always true (keep reading).
  static bool keep_input(DirectConn* c) {
    if (c->in_off == c->in.size()) {
      c->in.clear();
      c->in_off = 0;
    } else if (c->in_off > 4096) {
      c->in.erase(0, c->in_off);
      c->in_off = 0;
    }
    return true;
  }

  void remove_running(Transfer* t) {
    auto pos = std::find(direct_running.begin(), direct_running.end(), t);
    if (pos != direct_running.end()) {
      *pos = direct_running.back();
      direct_running.pop_back();
    }
  }

  // The response is complete: the connection goes back to the pool (or is closed).
  void direct_done(DirectConn* c) {
    Transfer* t = c->t;
    c->reused = true;
    settle(c);  // it answered: the server has accepted it
    bool reusable = c->keep_alive && c->in_off == c->in.size() &&
                    idle_count < static_cast<std::size_t>(std::max(0L, max_idle));
    c->t = nullptr;
    t->conn = nullptr;
    if (reusable) {
      c->in.clear();
      c->in_off = 0;
      c->out.clear();
      direct_register(c, EPOLLIN);
      hosts[c->key].idle.push_back(c);
      ++idle_count;
    }
    std::string key = c->key;
    if (!reusable) direct_close(c, false);
    t->result = CURLE_OK;
    direct_finished(t);
    dispatch_waiting(key);
  }

  void direct_fail(Transfer* t, CURLcode code, const std::string& detail) {
    if (DirectConn* c = t->conn) {
      t->conn = nullptr;
      c->t = nullptr;
      direct_close(c);
    }
    t->result = code;
    std::snprintf(t->error_buffer, sizeof t->error_buffer, "%s", detail.c_str());
    direct_finished(t);
  }

  void direct_finished(Transfer* t) {
    stop_waiting(t);
    remove_running(t);
    t->response.total_s = std::chrono::duration<double>(steady::now() - t->started).count();
    t->state = State::Finished;
    finished.push_back(t);
  }

  // Fails the direct transfers whose time is up; returns the next deadline.
  steady::time_point direct_timeouts() {
    steady::time_point next = steady::time_point::max();
    if (direct_running.empty()) return next;
    auto now = steady::now();
    // Nothing can be due before direct_next_due (a lower bound: transfers
    // that finished may have held it): skip the scan until then.
    if (now < direct_next_due) return direct_next_due;
    for (std::size_t i = 0; i < direct_running.size();) {
      Transfer* t = direct_running[i];
      bool connecting = t->conn && t->conn->connecting;
      steady::time_point due = t->deadline;
      if (connecting) due = std::min(due, t->connect_deadline);
      if (due <= now) {
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - t->started).count();
        std::string detail =
            connecting ? "Connection timed out after " + std::to_string(ms) + " milliseconds"
                       : "Operation timed out after " + std::to_string(ms) + " milliseconds with " +
                             std::to_string(t->response.body.size()) + " bytes received";
        direct_fail(t, CURLE_OPERATION_TIMEDOUT, detail);  // removes it from direct_running
        continue;
      }
      next = std::min(next, due);
      ++i;
    }
    direct_next_due = next;
    return next;
  }

  void direct_cancel(Transfer* t) {
    stop_waiting(t);
    remove_running(t);
    if (DirectConn* c = t->conn) {
      t->conn = nullptr;
      c->t = nullptr;
      direct_close(c);  // mid-request: the connection cannot be reused
    }
  }

  // --- the epoll loop ---------------------------------------------------------------------

  void watch(int fd, std::uint32_t events) {
    if (fd < 0) return;
    auto i = static_cast<std::size_t>(fd);
    if (i >= registered.size()) {
      registered.resize(i + 1, 0);
      wanted.resize(i + 1, false);
    }
    wanted[i] = events != 0;
    if (events == 0 || registered[i] == events) return;
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    // The descriptor may have been closed (and reopened) since it was
    // registered, which removed it from the set: fall back to ADD.
    if (registered[i] == 0 || epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fd, &ev) != 0) {
      if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0 && errno == EEXIST)
        epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fd, &ev);
    }
    registered[i] = events;
  }

  void unwatch(int fd) {
    auto i = static_cast<std::size_t>(fd);
    if (i < registered.size() && registered[i] != 0) {
      epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
      registered[i] = 0;
      wanted[i] = false;
    }
  }

  static int on_socket(CURL*, curl_socket_t fd, int what, void* user, void*) {
    auto* self = static_cast<Impl*>(user);
    if (what == CURL_POLL_REMOVE) {
      // Lazily: keep it registered (see `registered`), only note libcurl is not interested.
      auto i = static_cast<std::size_t>(fd);
      if (i < self->wanted.size()) self->wanted[i] = false;
      return 0;
    }
    std::uint32_t events = 0;
    if (what & CURL_POLL_IN) events |= EPOLLIN;
    if (what & CURL_POLL_OUT) events |= EPOLLOUT;
    self->watch(fd, events);
    return 0;
  }

  static int on_close_socket(void* user, curl_socket_t fd) {
    static_cast<Impl*>(user)->unwatch(fd);
    return close(fd);
  }

  static int on_timer(CURLM*, long timeout_ms, void* user) {
    auto* self = static_cast<Impl*>(user);
    if (timeout_ms < 0) {
      self->timer_armed = false;
    } else {
      self->timer_armed = true;
      self->timer_due = steady::now() + std::chrono::milliseconds(timeout_ms);
    }
    return 0;
  }

  void socket_action(curl_socket_t fd, int mask) {
    int running = 0;
    libcurl().multi_socket_action(multi, fd, mask, &running);
  }

  void run_timeouts() {
    timer_armed = false;
    socket_action(CURL_SOCKET_TIMEOUT, 0);
  }

  void collect_finished() {
    int left = 0;
    while (CURLMsg* msg = libcurl().multi_info_read(multi, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      Transfer* t = nullptr;
      libcurl().easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char**>(&t));
      t->result = msg->data.result;
      libcurl().multi_remove_handle(multi, t->easy);
      t->state = State::Finished;
      finished.push_back(t);
    }
  }

  // Runs one callback; the transfer is released even if the callback throws.
  void deliver(Transfer* t, const Error* cancel_error) {
    t->state = State::Delivering;
    ++stats.requests;
    struct Releaser {
      Impl* impl;
      Transfer* t;
      ~Releaser() { impl->release(t); }
    } releaser{this, t};
    DoneCallback on_done = std::move(t->on_done);
    if (cancel_error) {
      on_done(nullptr, cancel_error);
      return;
    }
    if (t->direct) {
      stats.connections += t->new_connections;
    } else {
      long connects = 0;
      libcurl().easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &connects);
      stats.connections += static_cast<std::uint64_t>(connects);
    }
    if (t->result != CURLE_OK) {
      auto failure = classify_curl_code(t->result);
      std::string detail =
          t->error_buffer[0] ? t->error_buffer : libcurl().easy_strerror(t->result);
      std::string message = describe_request(t->request.method, t->request.url) + ": " +
                            failure.code + " (" + detail + ")";
      if (t->result == CURLE_OPERATION_TIMEDOUT && t->request.timeout_s > 0) {
        message = describe_request(t->request.method, t->request.url) + ": timeout after " +
                  std::to_string(t->request.timeout_s) + " s (" + detail + ")";
      }
      Error error(failure.code, message, 0, failure.retryable);
      on_done(nullptr, &error);
      return;
    }
    if (!t->direct) {
      long status = 0;
      libcurl().easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
      curl_off_t total_us = 0;
      libcurl().easy_getinfo(t->easy, CURLINFO_TOTAL_TIME_T, &total_us);
      t->response.status = static_cast<int>(status);
      t->response.total_s = static_cast<double>(total_us) / 1e6;
    }
    t->response.headers.items.resize(t->header_count);
    on_done(&t->response, nullptr);
  }

  void deliver_finished() {
    while (!finished.empty()) {
      Transfer* t = finished.front();
      finished.pop_front();
      deliver(t, nullptr);
    }
  }

  void cancel(RequestId id, const char* code, const char* why) {
    Transfer* t = lookup(id);
    if (!t) return;
    if (t->state == State::Running) {
      if (t->direct) {
        direct_cancel(t);
      } else {
        libcurl().multi_remove_handle(multi, t->easy);
      }
    } else {
      finished.erase(std::find(finished.begin(), finished.end(), t));
    }
    Error error(code, describe_request(t->request.method, t->request.url) + ": " + why, 0, false);
    deliver(t, &error);
  }

  // Lets libcurl act on what is due or ready, waiting at most max_wait_ms for
  // a socket, a libcurl timeout or the interrupt pipe.
  void pump(int max_wait_ms) {
    if (timer_armed && steady::now() >= timer_due) run_timeouts();
    collect_finished();
    if (!finished.empty()) return;
    steady::time_point due = direct_timeouts();
    if (opening_total > 0) {
      // Waiting transfers look again soon; stuck handshakes every quarter second.
      auto now = steady::now();
      if (waiting_total > 0 || now >= next_stuck_check) {
        check_all_opening();
        next_stuck_check = now + std::chrono::milliseconds(250);
      }
      if (opening_total > 0)
        due = std::min(due,
                       waiting_total > 0 ? now + std::chrono::milliseconds(1) : next_stuck_check);
    }
    if (!finished.empty()) return;
    if (timer_armed) due = std::min(due, timer_due);
    int wait_ms = max_wait_ms;
    if (due != steady::time_point::max()) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(due - steady::now()).count();
      wait_ms = static_cast<int>(std::clamp<long long>(left, 0, max_wait_ms));
    }
    epoll_event events[64];
    int n = epoll_wait(epoll_fd, events, 64, wait_ms);
    for (int k = 0; k < n; ++k) {
      int fd = events[k].data.fd;
      if (fd == wake_fd) continue;  // the caller sees the pending interrupt
      auto i = static_cast<std::size_t>(fd);
      if (i < direct_by_fd.size() && direct_by_fd[i]) {
        direct_event(direct_by_fd[i], events[k].events);
        continue;
      }
      if (i >= wanted.size() || !wanted[i]) {
        unwatch(fd);  // an idle connection closed or spoke: libcurl looks at it when reused
        continue;
      }
      std::uint32_t e = events[k].events;
      int mask = 0;
      if (e & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)) mask |= CURL_CSELECT_IN;
      if (e & EPOLLOUT) mask |= CURL_CSELECT_OUT;
      if (e & EPOLLERR) mask |= CURL_CSELECT_ERR;
      socket_action(fd, mask);
    }
    if (timer_armed && steady::now() >= timer_due) run_timeouts();
    collect_finished();
    direct_timeouts();
  }
};

HttpClient::HttpClient(ClientOptions options) : impl_(std::make_unique<Impl>()) {
  static const bool curl_ready = libcurl().global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  if (!curl_ready) throw Error("transport_failed", "curl_global_init failed");
  impl_->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (impl_->epoll_fd < 0)
    throw Error("transport_failed", std::string("epoll_create1 failed: ") + std::strerror(errno));
  impl_->wake_fd = flare::interrupt::wake_fd();
  epoll_event wake{};
  wake.events = EPOLLIN;
  wake.data.fd = impl_->wake_fd;
  epoll_ctl(impl_->epoll_fd, EPOLL_CTL_ADD, impl_->wake_fd, &wake);
  const char* no_direct = std::getenv("FLARE_HTTP_LIBCURL");
  impl_->direct_enabled = !(no_direct && *no_direct && std::strcmp(no_direct, "0") != 0);
  impl_->connection_limits = options.max_host_connections > 0 || options.max_total_connections > 0;
  impl_->proxy_env = Impl::proxy_configured();
  impl_->max_idle = options.max_idle_connections;
  impl_->multi = libcurl().multi_init();
  if (!impl_->multi) {
    close(impl_->epoll_fd);
    throw Error("out_of_memory", "curl_multi_init failed");
  }
  libcurl().multi_setopt(impl_->multi, CURLMOPT_MAX_HOST_CONNECTIONS, options.max_host_connections);
  libcurl().multi_setopt(impl_->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                         options.max_total_connections);
  libcurl().multi_setopt(impl_->multi, CURLMOPT_MAXCONNECTS, options.max_idle_connections);
  libcurl().multi_setopt(impl_->multi, CURLMOPT_SOCKETFUNCTION, &Impl::on_socket);
  libcurl().multi_setopt(impl_->multi, CURLMOPT_SOCKETDATA, impl_.get());
  libcurl().multi_setopt(impl_->multi, CURLMOPT_TIMERFUNCTION, &Impl::on_timer);
  libcurl().multi_setopt(impl_->multi, CURLMOPT_TIMERDATA, impl_.get());
}

HttpClient::~HttpClient() {
  for (auto& [key, host] : impl_->hosts) {
    for (DirectConn* c : host.idle) impl_->direct_close(c, false);
    host.idle.clear();
    host.waiting.clear();
  }
  for (auto& slot : impl_->slots) {
    if (slot->conn) impl_->direct_close(slot->conn, false);
    slot->conn = nullptr;
    if (slot->state == State::Running && !slot->direct)
      libcurl().multi_remove_handle(impl_->multi, slot->easy);
    if (slot->easy) libcurl().easy_cleanup(slot->easy);
  }
  libcurl().multi_cleanup(impl_->multi);
  close(impl_->epoll_fd);
}

namespace {

void reset_for_submit(Transfer* t) {
  t->error_buffer[0] = '\0';
  t->result = CURLE_OK;
  t->response.status = 0;
  t->response.total_s = 0;
  t->header_count = 0;
}

}  // namespace

RequestId HttpClient::submit(Request request, DoneCallback on_done) {
  check_request(request);
  Transfer* t = impl_->acquire();
  ++impl_->active;
  t->request = std::move(request);
  t->on_done = std::move(on_done);
  return start(t);
}

RequestId HttpClient::submit_with(FunctionRef<void(Request&)> fill, DoneCallback on_done) {
  Transfer* t = impl_->acquire();
  ++impl_->active;
  try {
    fill(t->request);
    check_request(t->request);
  } catch (...) {
    t->state = State::Delivering;
    impl_->release(t);
    throw;
  }
  t->on_done = std::move(on_done);
  return start(t);
}

RequestId HttpClient::start(void* transfer) {
  auto* t = static_cast<Transfer*>(transfer);
  reset_for_submit(t);
  t->direct = impl_->direct_eligible(t);
  if (t->direct) {
    t->direct_retried = false;
    t->new_connections = 0;
    t->started = steady::now();
    t->deadline = t->request.timeout_s > 0
                      ? t->started + std::chrono::milliseconds(to_ms(t->request.timeout_s))
                      : steady::time_point::max();
    t->state = State::Running;
    impl_->direct_running.push_back(t);
    impl_->direct_next_due = std::min(impl_->direct_next_due, t->deadline);
    impl_->direct_start(t);  // a failure is reported through the callback, as with libcurl
    return t->id;
  }
  try {
    impl_->configure(t);
    CURLMcode rc = libcurl().multi_add_handle(impl_->multi, t->easy);
    if (rc != CURLM_OK)
      throw Error("transport_failed", describe_request(t->request.method, t->request.url) + ": " +
                                          libcurl().multi_strerror(rc));
  } catch (...) {
    t->state = State::Delivering;
    impl_->release(t);
    throw;
  }
  t->state = State::Running;
  return t->id;
}

bool HttpClient::run_until(const std::function<bool()>& done, double timeout_s,
                           std::span<const RequestId> cancel_on_interrupt) {
  using clock = std::chrono::steady_clock;
  const bool forever = timeout_s < 0;
  const auto deadline = forever ? clock::time_point::max()
                                : clock::now() + std::chrono::duration_cast<clock::duration>(
                                                     std::chrono::duration<double>(timeout_s));
  for (;;) {
    impl_->deliver_finished();
    if (done()) return true;
    if (flare::interrupt::pending()) {
      for (RequestId id : cancel_on_interrupt) impl_->cancel(id, "interrupted", "interrupted");
      flare::interrupt::check();
    }
    int wait_ms = kMaxPollMs;
    if (!forever) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
      if (left.count() <= 0) return false;
      wait_ms = static_cast<int>(std::min<long long>(left.count(), kMaxPollMs));
    }
    impl_->pump(wait_ms);
  }
}

void HttpClient::wait(RequestId id) {
  const RequestId ids[1] = {id};
  run_until([&] { return impl_->lookup(id) == nullptr; }, -1, ids);
}

void HttpClient::wait_all(std::span<const RequestId> ids) {
  std::size_t next = 0;  // every id before `next` has finished
  run_until(
      [&] {
        while (next < ids.size() && impl_->lookup(ids[next]) == nullptr) ++next;
        return next == ids.size();
      },
      -1, ids);
}

void HttpClient::cancel(RequestId id) {
  impl_->cancel(id, "cancelled", "cancelled");
}

bool HttpClient::in_flight(RequestId id) const {
  return impl_->lookup(id) != nullptr;
}
std::size_t HttpClient::in_flight_count() const {
  return impl_->active;
}
ClientStats HttpClient::stats() const {
  return impl_->stats;
}

HttpClient& shared_client() {
  // Never destroyed: Lua objects collected during exit may still cancel requests.
  static HttpClient* client = new HttpClient();
  return *client;
}

}  // namespace flare::net
