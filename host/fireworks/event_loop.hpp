#pragma once
// Timers on top of the process's one HTTP event loop (net::shared_client()), and
// Ctrl-C handling for everything this library has in flight: whoever waits
// pumps transfers and fires due timers; an interrupt cancels every registered
// operation before flare::Interrupted propagates.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "net/http_client.hpp"

namespace flare::fireworks {

// Work that can be abandoned at once (all its requests cancelled, its waiters
// released with an "interrupted" error).
class Cancellable {
 public:
  virtual ~Cancellable() = default;
  virtual void cancel_all(const char* code) = 0;
};

using TimerId = std::uint64_t;

class EventLoop {
 public:
  static EventLoop& instance();
  net::HttpClient& http() { return http_; }

  TimerId call_later(double delay_s, std::function<void()> fn);
  void cancel_timer(TimerId id);

  // Pumps transfers and timers until done() (true) or timeout_s passed
  // (false); timeout_s < 0 waits forever. On SIGINT: cancels every tracked
  // operation, then throws flare::Interrupted.
  bool run_until(const std::function<bool()>& done, double timeout_s);
  // An interruptible sleep that keeps everything in flight moving.
  void sleep(double seconds);

  void track(const std::shared_ptr<Cancellable>& op);

  static double now();  // monotonic seconds

 private:
  explicit EventLoop(net::HttpClient& http) : http_(http) {}
  void fire_due();
  double next_due() const;
  void cancel_tracked();

  net::HttpClient& http_;
  std::multimap<double, std::pair<TimerId, std::function<void()>>> timers_;
  TimerId next_timer_ = 1;
  std::vector<std::weak_ptr<Cancellable>> tracked_;
};

}  // namespace flare::fireworks
