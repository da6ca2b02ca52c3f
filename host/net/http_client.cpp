#include "net/http_client.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>

#include "net/curl_transport.hpp"
#include "net/direct_transport.hpp"
#include "net/http1_parser.hpp"
#include "net/request_check.hpp"
#include "net/transfer.hpp"
#include "runtime/interrupt.hpp"

namespace flare::net {
namespace {

constexpr int kMaxPollMs = 100;  // safety net; the interrupt pipe wakes the poll at once

// The epoll descriptor, closed with the client.
struct EpollFd {
  int fd = epoll_create1(EPOLL_CLOEXEC);
  EpollFd() {
    if (fd < 0)
      throw Error("transport_failed", std::string("epoll_create1 failed: ") + std::strerror(errno));
  }
  ~EpollFd() { close(fd); }
  EpollFd(const EpollFd&) = delete;
  EpollFd& operator=(const EpollFd&) = delete;
};

void reset_for_submit(Transfer* t) {
  t->error_buffer[0] = '\0';
  t->result = CURLE_OK;
  t->response.status = 0;
  t->response.total_s = 0;
  t->response.first_body_byte_s = -1;
  t->header_count = 0;
}

}  // namespace

const std::string* Headers::find(std::string_view name) const {
  for (const auto& item : items)
    if (iequals(item.first, name)) return &item.second;
  return nullptr;
}

// Request ids and slots, completion callbacks, and the epoll loop that both
// transports share: a descriptor belongs to the direct transport or else to libcurl.
struct HttpClient::Impl {
  explicit Impl(const ClientOptions& options)
      : curl(epoll.fd, finished, options), direct(epoll.fd, finished, options) {
    interruptible = options.interruptible;
    if (!interruptible) return;
    wake_fd = flare::interrupt::wake_fd();
    epoll_event wake{};
    wake.events = EPOLLIN;
    wake.data.fd = wake_fd;
    epoll_ctl(epoll.fd, EPOLL_CTL_ADD, wake_fd, &wake);
  }

  EpollFd epoll;
  int wake_fd = -1;
  bool interruptible = true;
  std::vector<std::unique_ptr<Transfer>> slots;
  std::vector<std::uint32_t> free_slots;
  std::deque<Transfer*> finished;  // done in a transport, callback not yet run
  std::uint64_t next_sequence = 1;
  std::size_t active = 0;
  ClientStats stats;
  CurlTransport curl;
  DirectTransport direct;

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
      t->easy = CurlTransport::new_easy();
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
    stats.connections += t->direct ? t->new_connections : CurlTransport::connections(t);
    if (t->result != CURLE_OK) {
      auto failure = classify_curl_code(t->result);
      std::string detail =
          t->error_buffer[0] ? t->error_buffer : CurlTransport::describe(t->result);
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
    if (!t->direct) CurlTransport::fill_response(t);
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
        direct.cancel(t);
      } else {
        curl.cancel(t);
      }
    } else {
      finished.erase(std::find(finished.begin(), finished.end(), t));
    }
    Error error(code, describe_request(t->request.method, t->request.url) + ": " + why, 0, false);
    deliver(t, &error);
  }

  // Lets both transports act on what is due or ready, waiting at most
  // max_wait_ms for a socket, a timeout or the interrupt pipe.
  void pump(int max_wait_ms) {
    curl.run_due();
    if (!finished.empty()) return;
    steady::time_point due = direct.service();
    if (!finished.empty()) return;
    due = std::min(due, curl.due());
    int wait_ms = max_wait_ms;
    if (due != steady::time_point::max()) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(due - steady::now()).count();
      wait_ms = static_cast<int>(std::clamp<long long>(left, 0, max_wait_ms));
    }
    epoll_event events[64];
    int n = epoll_wait(epoll.fd, events, 64, wait_ms);
    for (int k = 0; k < n; ++k) {
      int fd = events[k].data.fd;
      if (fd == wake_fd) continue;  // the caller sees the pending interrupt
      if (!direct.on_event(fd, events[k].events)) curl.on_event(fd, events[k].events);
    }
    curl.run_due();
    direct.timeouts();
  }
};

HttpClient::HttpClient(ClientOptions options) : impl_(std::make_unique<Impl>(options)) {}

HttpClient::~HttpClient() {
  impl_->direct.close_all();
  for (auto& slot : impl_->slots) {
    if (slot->state == State::Running && !slot->direct) impl_->curl.cancel(slot.get());
    CurlTransport::free_easy(slot->easy);
    slot->easy = nullptr;
  }
}

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
  t->direct = impl_->direct.eligible(t);
  if (t->direct) {
    t->state = State::Running;
    impl_->direct.start(t);  // a failure is reported through the callback, as with libcurl
    return t->id;
  }
  try {
    impl_->curl.start(t);
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
    if (impl_->interruptible && flare::interrupt::pending()) {
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
