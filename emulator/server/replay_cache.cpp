#include "emulator/server/replay_cache.hpp"

#include <iterator>

namespace flare::emulator {

void ReplayCache::run(const httplib::Request& req, httplib::Response& res, const Handler& h) {
  auto rid = req.headers.find("x-request-id");
  if (rid == req.headers.end() || rid->second.empty()) return h(req, res);
  std::string key = req.path + '\n' + rid->second;
  {
    std::unique_lock lock(mu_);
    auto it = answers_.find(key);
    if (it != answers_.end()) {
      cv_.wait(lock, [&] {
        auto found = answers_.find(key);
        return found == answers_.end() || found->second.done;
      });
      it = answers_.find(key);
      if (it != answers_.end()) {
        ++replayed_;
        res.status = it->second.status;
        res.set_content(it->second.body, it->second.content_type);
        return;
      }
    }
    answers_[key];  // running
    order_.push_back(key);
  }
  auto forget = [&] {
    std::lock_guard lock(mu_);
    answers_.erase(key);
    for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
      if (*it == key) {
        order_.erase(std::next(it).base());
        break;
      }
    }
    cv_.notify_all();
  };
  try {
    h(req, res);
  } catch (...) {
    forget();  // an error is not an answer: a retry runs again
    throw;
  }
  std::lock_guard lock(mu_);
  Answer& a = answers_[key];
  a.done = true;
  a.status = res.status;
  a.body = res.body;
  a.content_type = res.get_header_value("Content-Type");
  while (order_.size() > capacity_) {  // the oldest finished answers go first
    auto old = answers_.find(order_.front());
    if (old != answers_.end() && !old->second.done) break;
    if (old != answers_.end()) answers_.erase(old);
    order_.pop_front();
  }
  cv_.notify_all();
}

long ReplayCache::replayed() const {
  std::lock_guard lock(mu_);
  return replayed_;
}

}  // namespace flare::emulator
