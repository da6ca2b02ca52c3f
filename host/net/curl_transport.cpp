#include "net/curl_transport.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "net/http1_parser.hpp"
#include "net/libcurl.hpp"
#include "runtime/error.hpp"

namespace flare::net {
namespace {

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  if (t->response.first_body_byte_s < 0 && size * n > 0)
    t->response.first_body_byte_s =
        std::chrono::duration<double>(steady::now() - t->started).count();
  t->response.body.append(data, size * n);
  return size * n;
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
    reserve_body(t->response, length);
  }
  store_header(t->response, t->header_count, name, value);
  return line.size();
}

}  // namespace

struct CurlTransport::Multi {
  Multi(int epoll, std::deque<Transfer*>& done) : epoll_fd(epoll), finished(done) {}
  CURLM* multi = nullptr;
  int epoll_fd;
  std::deque<Transfer*>& finished;  // the client's: transfers whose callback is due
  // Per file descriptor: the events registered in epoll_fd (0 = none) and
  // whether libcurl currently wants them. A socket libcurl stops watching
  // (an idle keep-alive connection) stays registered until it reports an
  // event, so reusing the connection costs no epoll_ctl.
  std::vector<std::uint32_t> registered;
  std::vector<bool> wanted;
  bool timer_armed = false;
  steady::time_point timer_due;

  // The options every transfer shares; set once per easy handle (and after a reset).
  void configure_common(Transfer* t) {
    CURL* e = t->easy;
    // Sockets leave the epoll set before libcurl closes them (see `registered`).
    libcurl().easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, &Multi::on_close_socket);
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
    auto* self = static_cast<Multi*>(user);
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
    static_cast<Multi*>(user)->unwatch(fd);
    return close(fd);
  }

  static int on_timer(CURLM*, long timeout_ms, void* user) {
    auto* self = static_cast<Multi*>(user);
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

  // A reused connection that ended with nothing received (the server closed it
  // idle as the request went out): libcurl retries that once, but on another
  // pooled connection, which the same idle sweep may have closed. The request
  // goes once more, on a new connection.
  bool retry_fresh(Transfer* t) {
    CURLcode r = t->result;
    if (t->fresh_retry ||
        (r != CURLE_GOT_NOTHING && r != CURLE_SEND_ERROR && r != CURLE_RECV_ERROR))
      return false;
    long connects = 0, status = 0;
    libcurl().easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &connects);
    libcurl().easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    if (connects != 0 || status != 0 || t->header_count != 0 || !t->response.body.empty())
      return false;
    t->fresh_retry = true;
    t->error_buffer[0] = '\0';
    libcurl().easy_setopt(t->easy, CURLOPT_FRESH_CONNECT, 1L);
    return libcurl().multi_add_handle(multi, t->easy) == CURLM_OK;
  }

  void collect_finished() {
    int left = 0;
    while (CURLMsg* msg = libcurl().multi_info_read(multi, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      Transfer* t = nullptr;
      libcurl().easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char**>(&t));
      t->result = msg->data.result;
      libcurl().multi_remove_handle(multi, t->easy);
      if (retry_fresh(t)) continue;
      t->state = State::Finished;
      finished.push_back(t);
    }
  }
};

CurlTransport::CurlTransport(int epoll_fd, std::deque<Transfer*>& finished,
                             const ClientOptions& options)
    : multi_(std::make_unique<Multi>(epoll_fd, finished)) {
  static const bool curl_ready = libcurl().global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  if (!curl_ready) throw Error("transport_failed", "curl_global_init failed");
  CURLM* m = multi_->multi = libcurl().multi_init();
  if (!m) throw Error("out_of_memory", "curl_multi_init failed");
  libcurl().multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, options.max_host_connections);
  libcurl().multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, options.max_total_connections);
  libcurl().multi_setopt(m, CURLMOPT_MAXCONNECTS, options.max_idle_connections);
  libcurl().multi_setopt(m, CURLMOPT_SOCKETFUNCTION, &Multi::on_socket);
  libcurl().multi_setopt(m, CURLMOPT_SOCKETDATA, multi_.get());
  libcurl().multi_setopt(m, CURLMOPT_TIMERFUNCTION, &Multi::on_timer);
  libcurl().multi_setopt(m, CURLMOPT_TIMERDATA, multi_.get());
}

CurlTransport::~CurlTransport() {
  libcurl().multi_cleanup(multi_->multi);
}

CURL* CurlTransport::new_easy() {
  CURL* easy = libcurl().easy_init();
  if (!easy) throw Error("out_of_memory", "curl_easy_init failed");
  return easy;
}

void CurlTransport::free_easy(CURL* easy) {
  if (easy) libcurl().easy_cleanup(easy);
}

void CurlTransport::start(Transfer* t) {
  t->started = steady::now();
  multi_->configure(t);
  if (t->fresh_retry) {
    libcurl().easy_setopt(t->easy, CURLOPT_FRESH_CONNECT, 0L);
    t->fresh_retry = false;
  }
  CURLMcode rc = libcurl().multi_add_handle(multi_->multi, t->easy);
  if (rc != CURLM_OK)
    throw Error("transport_failed", describe_request(t->request.method, t->request.url) + ": " +
                                        libcurl().multi_strerror(rc));
}

void CurlTransport::cancel(Transfer* t) {
  libcurl().multi_remove_handle(multi_->multi, t->easy);
}

void CurlTransport::on_event(int fd, std::uint32_t e) {
  auto i = static_cast<std::size_t>(fd);
  if (i >= multi_->wanted.size() || !multi_->wanted[i]) {
    multi_->unwatch(fd);  // an idle connection closed or spoke: libcurl looks at it when reused
    return;
  }
  int mask = 0;
  if (e & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)) mask |= CURL_CSELECT_IN;
  if (e & EPOLLOUT) mask |= CURL_CSELECT_OUT;
  if (e & EPOLLERR) mask |= CURL_CSELECT_ERR;
  multi_->socket_action(fd, mask);
}

void CurlTransport::run_due() {
  if (multi_->timer_armed && steady::now() >= multi_->timer_due) multi_->run_timeouts();
  multi_->collect_finished();
}

steady::time_point CurlTransport::due() const {
  return multi_->timer_armed ? multi_->timer_due : steady::time_point::max();
}

void CurlTransport::fill_response(Transfer* t) {
  long status = 0;
  libcurl().easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_off_t total_us = 0;
  libcurl().easy_getinfo(t->easy, CURLINFO_TOTAL_TIME_T, &total_us);
  t->response.status = static_cast<int>(status);
  t->response.total_s = static_cast<double>(total_us) / 1e6;
}

std::uint64_t CurlTransport::connections(const Transfer* t) {
  long connects = 0;
  libcurl().easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &connects);
  return static_cast<std::uint64_t>(connects);
}

const char* CurlTransport::describe(CURLcode code) {
  return libcurl().easy_strerror(code);
}

}  // namespace flare::net
