#pragma once
// Makes a non-idempotent POST (optim_step, forward_backward, save_*) safe to
// retry: a request carrying an x-request-id that was already answered gets the
// first answer again instead of running twice. A client keeps the id across
// its retries, so a response lost to a reset or a cut body cannot apply an
// optimizer step twice. Bounded: the oldest answers are forgotten first.
#include <httplib.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>

namespace flare::emulator {

class ReplayCache {
 public:
  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;
  explicit ReplayCache(size_t capacity = 512) : capacity_(capacity) {}

  // Runs h once per (path, x-request-id); a duplicate that arrives while the
  // first is still running waits for its answer. Without the header h just runs.
  void run(const httplib::Request& req, httplib::Response& res, const Handler& h);
  long replayed() const;

 private:
  struct Answer {
    bool done = false;
    int status = 0;
    std::string body, content_type;
  };
  size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<std::string, Answer> answers_;
  std::deque<std::string> order_;
  long replayed_ = 0;
};

}  // namespace flare::emulator
