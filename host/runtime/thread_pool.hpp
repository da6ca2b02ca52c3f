#pragma once
// A small process-wide pool: parallel_for runs fn(0..n-1) on the pool's
// threads plus the caller. Calls made while the pool is busy (from another
// thread, or nested inside a job) run on the calling thread alone.
#include <cstddef>
#include <functional>

namespace flare {

// Threads available to parallel_for (workers + the caller).
unsigned pool_size();

// Runs fn(i) for every i in [0, n) on up to `threads` threads (0 = pool_size()).
// The first exception thrown by fn stops the handing out of further indices and
// is rethrown here after every started call has returned.
void parallel_for(size_t n, unsigned threads, const std::function<void(size_t)>& fn);

}  // namespace flare
