#include "net/http_client.hpp"

#include <algorithm>
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

struct Transfer {
  RequestId id = 0;
  std::uint32_t index = 0;  // position in HttpClient::Impl::slots
  State state = State::Free;
  CURL* easy = nullptr;
  curl_slist* header_list = nullptr;
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
    t->response.headers.items.clear();
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
  t->response.headers.add(std::string(name), std::string(value));
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

}  // namespace

const std::string* Headers::find(std::string_view name) const {
  for (const auto& item : items)
    if (iequals(item.first, name)) return &item.second;
  return nullptr;
}

struct HttpClient::Impl {
  CURLM* multi = nullptr;
  std::vector<std::unique_ptr<Transfer>> slots;
  std::vector<std::uint32_t> free_slots;
  std::vector<CURL*> free_easy;
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
      slots.push_back(std::make_unique<Transfer>());
      slots.back()->index = index;
    }
    Transfer* t = slots[index].get();
    t->id = (next_sequence++ << 32) | index;
    if (!free_easy.empty()) {
      t->easy = free_easy.back();
      free_easy.pop_back();
    } else {
      t->easy = libcurl().easy_init();
      if (!t->easy) throw Error("out_of_memory", "curl_easy_init failed");
    }
    return t;
  }

  void release(Transfer* t) {
    libcurl().slist_free_all(t->header_list);
    t->header_list = nullptr;
    libcurl().easy_reset(t->easy);
    free_easy.push_back(t->easy);
    t->easy = nullptr;
    t->on_done = nullptr;
    t->request.headers.items.clear();
    t->request.body.clear();
    t->response.headers.items.clear();
    t->response.body.clear();
    t->state = State::Free;
    t->id = 0;
    free_slots.push_back(t->index);
    --active;
  }

  void configure(Transfer* t) {
    CURL* e = t->easy;
    const Request& r = t->request;
    libcurl().easy_setopt(e, CURLOPT_PRIVATE, t);
    libcurl().easy_setopt(e, CURLOPT_URL, r.url.c_str());
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
    libcurl().easy_setopt(e, CURLOPT_TIMEOUT_MS, to_ms(r.timeout_s));
    libcurl().easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, to_ms(r.connect_timeout_s));
    libcurl().easy_setopt(e, CURLOPT_SSL_VERIFYPEER, r.verify_tls ? 1L : 0L);
    libcurl().easy_setopt(e, CURLOPT_SSL_VERIFYHOST, r.verify_tls ? 2L : 0L);

    bool has_body =
        !r.body.empty() || r.method == "POST" || r.method == "PUT" || r.method == "PATCH";
    if (r.method == "GET" && r.body.empty()) {
      libcurl().easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (r.method == "HEAD") {
      libcurl().easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (r.method != "POST") {
      libcurl().easy_setopt(e, CURLOPT_CUSTOMREQUEST, r.method.c_str());
    }
    if (has_body && r.method != "HEAD") {
      libcurl().easy_setopt(e, CURLOPT_POSTFIELDS, r.body.data());
      libcurl().easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
    }

    std::string line;
    for (const auto& [name, value] : r.headers.items) {
      line.assign(name);
      // "Name;" is libcurl's way to send a header with an empty value.
      line.append(value.empty() ? ";" : ": ");
      line.append(value);
      append_header(t, line.c_str());
    }
    if (has_body) {
      // A round trip for "Expect: 100-continue" only costs latency on APIs we talk to.
      append_header(t, "Expect:");
      // libcurl would label the body as a form; raw bytes are the honest default.
      if (!r.headers.find("Content-Type"))
        append_header(t, "Content-Type: application/octet-stream");
    }
    if (t->header_list) libcurl().easy_setopt(e, CURLOPT_HTTPHEADER, t->header_list);
  }

  static void append_header(Transfer* t, const char* line) {
    curl_slist* list = libcurl().slist_append(t->header_list, line);
    if (!list) throw Error("out_of_memory", "curl_slist_append failed");
    t->header_list = list;
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

  void perform_and_poll(int max_wait_ms) {
    int running = 0;
    libcurl().multi_perform(multi, &running);
    collect_finished();
    if (!finished.empty()) return;
    curl_waitfd wake{flare::interrupt::wake_fd(), CURL_WAIT_POLLIN, 0};
    libcurl().multi_poll(multi, &wake, 1, max_wait_ms, nullptr);
  }
};

HttpClient::HttpClient(ClientOptions options) : impl_(std::make_unique<Impl>()) {
  static const bool curl_ready = libcurl().global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  if (!curl_ready) throw Error("transport_failed", "curl_global_init failed");
  impl_->multi = libcurl().multi_init();
  if (!impl_->multi) throw Error("out_of_memory", "curl_multi_init failed");
  libcurl().multi_setopt(impl_->multi, CURLMOPT_MAX_HOST_CONNECTIONS, options.max_host_connections);
  libcurl().multi_setopt(impl_->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                         options.max_total_connections);
  libcurl().multi_setopt(impl_->multi, CURLMOPT_MAXCONNECTS, options.max_idle_connections);
}

HttpClient::~HttpClient() {
  for (auto& slot : impl_->slots) {
    if (slot->state == State::Running) libcurl().multi_remove_handle(impl_->multi, slot->easy);
    if (slot->easy) libcurl().easy_cleanup(slot->easy);
    libcurl().slist_free_all(slot->header_list);
  }
  for (CURL* e : impl_->free_easy) libcurl().easy_cleanup(e);
  libcurl().multi_cleanup(impl_->multi);
}

RequestId HttpClient::submit(Request request, DoneCallback on_done) {
  check_request(request);
  Transfer* t = impl_->acquire();
  ++impl_->active;
  t->request = std::move(request);
  t->on_done = std::move(on_done);
  t->error_buffer[0] = '\0';
  t->result = CURLE_OK;
  t->response.status = 0;
  t->response.total_s = 0;
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
    impl_->perform_and_poll(wait_ms);
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
