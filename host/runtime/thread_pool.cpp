#include "runtime/thread_pool.hpp"

#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace flare {
namespace {

thread_local bool t_inside_job = false;

class Pool {
 public:
  Pool() {
    unsigned hw = std::thread::hardware_concurrency();
    unsigned workers = hw > 1 ? hw - 1 : 0;
    for (unsigned i = 0; i < workers; ++i) threads_.emplace_back([this] { worker(); });
  }
  ~Pool() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }

  unsigned size() const { return static_cast<unsigned>(threads_.size()) + 1; }

  void run(size_t n, unsigned threads, const std::function<void(size_t)>& fn) {
    if (threads == 0 || threads > size()) threads = size();
    if (threads > n) threads = static_cast<unsigned>(n);
    std::unique_lock busy(busy_, std::try_to_lock);
    if (threads <= 1 || t_inside_job || !busy.owns_lock()) {
      for (size_t i = 0; i < n; ++i) fn(i);
      return;
    }
    {
      std::lock_guard lock(mu_);
      fn_ = &fn;
      n_ = n;
      next_.store(0);
      failed_.store(false);
      error_ = nullptr;
      helpers_wanted_ = threads - 1;
      helpers_running_ = 0;
      ++generation_;
    }
    wake_.notify_all();
    work();
    std::unique_lock lock(mu_);
    helpers_wanted_ = 0;
    done_.wait(lock, [&] { return helpers_running_ == 0; });
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void work() {
    t_inside_job = true;
    for (;;) {
      if (failed_.load(std::memory_order_relaxed)) break;
      size_t i = next_.fetch_add(1);
      if (i >= n_) break;
      try {
        (*fn_)(i);
      } catch (...) {
        std::lock_guard lock(mu_);
        if (!error_) error_ = std::current_exception();
        failed_.store(true);
      }
    }
    t_inside_job = false;
  }

  void worker() {
    uint64_t seen = 0;
    std::unique_lock lock(mu_);
    for (;;) {
      wake_.wait(lock, [&] { return stopping_ || (generation_ != seen && helpers_wanted_ > 0); });
      if (stopping_) return;
      seen = generation_;
      --helpers_wanted_;
      ++helpers_running_;
      lock.unlock();
      work();
      lock.lock();
      if (--helpers_running_ == 0) done_.notify_all();
    }
  }

  std::vector<std::thread> threads_;
  std::mutex busy_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  bool stopping_ = false;
  uint64_t generation_ = 0;
  unsigned helpers_wanted_ = 0, helpers_running_ = 0;
  const std::function<void(size_t)>* fn_ = nullptr;
  size_t n_ = 0;
  std::atomic<size_t> next_{0};
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;
};

Pool& shared_pool() {
  static Pool pool;
  return pool;
}

}  // namespace

unsigned pool_size() {
  return shared_pool().size();
}

void parallel_for(size_t n, unsigned threads, const std::function<void(size_t)>& fn) {
  if (n == 0) return;
  shared_pool().run(n, threads, fn);
}

}  // namespace flare
