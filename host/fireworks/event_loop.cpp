#include "fireworks/event_loop.hpp"

#include <algorithm>
#include <chrono>
#include <limits>

#include "runtime/error.hpp"

namespace flare::fireworks {

double EventLoop::now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

EventLoop& EventLoop::instance() {
  static EventLoop* loop = new EventLoop(net::shared_client());  // never destroyed, like the client
  return *loop;
}

TimerId EventLoop::call_later(double delay_s, std::function<void()> fn) {
  TimerId id = next_timer_++;
  timers_.emplace(now() + std::max(0.0, delay_s), std::make_pair(id, std::move(fn)));
  return id;
}

void EventLoop::cancel_timer(TimerId id) {
  for (auto it = timers_.begin(); it != timers_.end(); ++it) {
    if (it->second.first == id) {
      timers_.erase(it);
      return;
    }
  }
}

double EventLoop::next_due() const {
  return timers_.empty() ? std::numeric_limits<double>::infinity() : timers_.begin()->first;
}

void EventLoop::fire_due() {
  double t = now();
  while (!timers_.empty() && timers_.begin()->first <= t) {
    auto fn = std::move(timers_.begin()->second.second);
    timers_.erase(timers_.begin());
    fn();
  }
}

void EventLoop::track(const std::shared_ptr<Cancellable>& op) {
  std::erase_if(tracked_, [](const std::weak_ptr<Cancellable>& w) { return w.expired(); });
  tracked_.push_back(op);
}

void EventLoop::cancel_tracked() {
  auto ops = std::move(tracked_);
  tracked_.clear();
  for (auto& weak : ops) {
    if (auto op = weak.lock()) op->cancel_all("interrupted");
  }
  timers_.clear();
}

bool EventLoop::run_until(const std::function<bool()>& done, double timeout_s) {
  const double deadline =
      timeout_s < 0 ? std::numeric_limits<double>::infinity() : now() + timeout_s;
  for (;;) {
    fire_due();
    if (done()) return true;
    double t = now();
    if (t >= deadline) return false;
    double wait = std::min(deadline, next_due()) - t;
    const double due = next_due();
    try {
      // A timer set by a completion callback may be due before `due`: stop
      // pumping then, so the wait is recomputed.
      http_.run_until([&] { return done() || next_due() < due || now() >= due; },
                      std::max(0.0, std::min(wait, 3600.0)));
    } catch (const Interrupted&) {
      cancel_tracked();
      throw;
    }
  }
}

void EventLoop::sleep(double seconds) {
  run_until([] { return false; }, seconds);
}

}  // namespace flare::fireworks
