#include "net/http_client.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <limits>

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
};

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
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
    if (length < (std::size_t{1} << 32)) t->response.body.reserve(length);
  }
  // Assign into the strings of earlier responses: they keep their capacity.
  auto& items = t->response.headers.items;
  if (t->header_count < items.size()) {
    items[t->header_count].first.assign(name);
    items[t->header_count].second.assign(value);
  } else {
    items.emplace_back(std::string(name), std::string(value));
  }
  ++t->header_count;
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
    long connects = 0;
    libcurl().easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &connects);
    stats.connections += static_cast<std::uint64_t>(connects);
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
    long status = 0;
    libcurl().easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_off_t total_us = 0;
    libcurl().easy_getinfo(t->easy, CURLINFO_TOTAL_TIME_T, &total_us);
    t->response.status = static_cast<int>(status);
    t->response.total_s = static_cast<double>(total_us) / 1e6;
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
      libcurl().multi_remove_handle(multi, t->easy);
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
    int wait_ms = max_wait_ms;
    if (timer_armed) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(timer_due - steady::now()).count();
      wait_ms = static_cast<int>(std::clamp<long long>(left, 0, max_wait_ms));
    }
    epoll_event events[64];
    int n = epoll_wait(epoll_fd, events, 64, wait_ms);
    for (int k = 0; k < n; ++k) {
      int fd = events[k].data.fd;
      if (fd == wake_fd) continue;  // the caller sees the pending interrupt
      auto i = static_cast<std::size_t>(fd);
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
  for (auto& slot : impl_->slots) {
    if (slot->state == State::Running) libcurl().multi_remove_handle(impl_->multi, slot->easy);
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
