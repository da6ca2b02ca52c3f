// Scheduling: callers enqueue requests; worker threads prefill new requests
// (once per request; the n choices then get copies of that KV cache) and run
// batched decode steps over the sequences that are waiting for their next
// token. Sequences join and leave the pool between steps, so a new request
// never waits for an old one to finish. Streaming callbacks run on the
// caller's own thread, fed through the request's event queue.
#include "emulator/engine/engine.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <span>
#include <stdexcept>
#include <thread>

#include "emulator/engine/choice_builder.hpp"
#include "emulator/engine/rng.hpp"
#include "emulator/engine/sampling.hpp"
#include "emulator/engine/validate.hpp"

namespace flare::engine {

namespace {

using Clock = std::chrono::steady_clock;
using CachePtr = std::unique_ptr<model::Model::Cache, void (*)(model::Model::Cache*)>;

double seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

struct Request;

struct Sequence {
  std::shared_ptr<Request> req;  // the cycle with Request::seqs is cut by complete()
  int index;
  Rng rng;
  ChoiceBuilder builder;
  CachePtr cache{nullptr, nullptr};
  int next_input = 0;             // the last sampled token, fed to the next decode step
  Clock::time_point ready_since;  // when it joined the pool waiting for a step
  double waited = 0;              // seconds spent in that pool, all steps together
};

struct Event {
  int index;
  TokenLogprob token;
  std::string text;
};

struct Request {
  std::shared_ptr<const model::Model> model;
  std::shared_ptr<const model::Adapter> adapter;  // every sequence of the request runs through it
  std::string identity;
  std::vector<int> prompt;
  SamplingParams params;
  SamplingConfig sampling;
  uint64_t seed = 0;
  bool streaming = false;
  Clock::time_point enqueued, prefill_start, prefill_end, first_token;
  int concurrent = 0;

  std::vector<std::unique_ptr<Sequence>> seqs;
  std::vector<TokenLogprob> prompt_lp;
  std::atomic<bool> cancelled{false};

  // Guarded by mu: progress reported to the waiting caller.
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Event> events;
  int unfinished = 0;
  std::exception_ptr error;
};

}  // namespace

struct Engine::Impl {
  int threads = 1;
  int max_batch = 32;

  mutable std::mutex model_mu;
  std::shared_ptr<const model::Model> model;
  std::shared_ptr<const model::Adapter> adapter;
  std::string identity;

  std::mutex mu;  // guards everything below
  std::condition_variable work_cv;
  std::deque<std::shared_ptr<Request>> pending;  // waiting for prefill
  std::deque<Sequence*> ready;                   // waiting for a decode step
  int decoding = 0;                              // sequences inside a decode step right now
  int active = 0;                                // requests between enqueue and their end
  bool stopping = false;
  std::vector<std::thread> workers;

  void worker_loop();
  // Requests whose callers must be woken. Workers wake them after a step,
  // holding no lock: a woken caller that takes the CPU then stalls nobody.
  using Wakeups = std::vector<std::shared_ptr<Request>>;

  void prefill(const std::shared_ptr<Request>& r, TokenDistribution& dist, Wakeups& wake);
  void decode_step(std::vector<Sequence*>& batch, std::vector<float>& logits,
                   TokenDistribution& dist, Wakeups& wake);
  // Samples the next token of `s` from `logits`; true when the choice finished.
  bool advance(Sequence& s, std::span<const float> logits, TokenDistribution& dist, Wakeups& wake);
  void finish(Sequence& s, Wakeups& wake);
  void fail(const std::shared_ptr<Request>& r, std::exception_ptr e, int sequences, Wakeups& wake);
  // Returns sequences to the pool; `stepped` of them leave the decoding count.
  void requeue(std::vector<Sequence*>& seqs, int stepped);
};

void Engine::Impl::worker_loop() {
  TokenDistribution dist;
  std::vector<float> logits;
  std::vector<Sequence*> batch;
  Wakeups wake;
  bool prefilled_last = false;
  for (;;) {
    std::shared_ptr<Request> to_prefill;
    batch.clear();
    {
      std::unique_lock lk(mu);
      work_cv.wait(lk, [&] { return stopping || !pending.empty() || !ready.empty(); });
      // New requests first (they join the next step), but never two prefills
      // in a row while sequences wait for a step: arrivals cannot starve decoding.
      if (!pending.empty() && (!prefilled_last || ready.empty())) {
        to_prefill = std::move(pending.front());
        pending.pop_front();
      } else if (!ready.empty()) {
        // An even share of all decoding sequences per worker keeps every core
        // busy; sequences of different models never share a step.
        const int active = int(ready.size()) + decoding;
        const int share = std::min(max_batch, std::max(1, (active + threads - 1) / threads));
        const model::Model* m = ready.front()->req->model.get();
        const Clock::time_point now = Clock::now();
        for (auto it = ready.begin(); it != ready.end() && int(batch.size()) < share;) {
          if ((*it)->req->model.get() == m) {
            (*it)->waited += seconds((*it)->ready_since, now);
            batch.push_back(*it);
            it = ready.erase(it);
          } else {
            ++it;
          }
        }
        decoding += int(batch.size());
      } else {
        return;  // stopping and nothing left to do
      }
    }
    prefilled_last = static_cast<bool>(to_prefill);
    if (to_prefill) {
      prefill(to_prefill, dist, wake);
      to_prefill.reset();
    } else {
      decode_step(batch, logits, dist, wake);
    }
    for (auto& r : wake) r->cv.notify_one();
    wake.clear();
  }
}

void Engine::Impl::prefill(const std::shared_ptr<Request>& req, TokenDistribution& dist,
                           Wakeups& wake) {
  Request& r = *req;
  r.prefill_start = Clock::now();
  const int n = r.params.n;
  const bool generate = r.params.max_tokens > 0;
  std::vector<float> logits_last;
  std::vector<Sequence*> seqs;
  try {
    const model::Model& m = *r.model;
    const int vocab = m.config().vocab;
    const std::vector<int>& prompt = r.prompt;
    std::vector<float> logits_all;
    logits_last.resize(vocab);
    if (r.params.echo) logits_all.resize(prompt.size() * size_t(vocab));

    CachePtr first = m.new_cache(r.adapter);
    m.prefill(*first, prompt, r.params.echo ? logits_all.data() : nullptr, logits_last.data());
    if (r.params.echo) {
      r.prompt_lp = prompt_logprobs(prompt, logits_all.data(), vocab, r.params.top_logprobs, dist);
      if (r.streaming) {
        std::string text = model::decode_tokens(prompt);
        std::lock_guard lk(r.mu);
        for (int i = 0; i < n; ++i)
          for (size_t k = 0; k < r.prompt_lp.size(); ++k)
            r.events.push_back({i, r.prompt_lp[k], k == 0 ? text : std::string()});
        wake.push_back(req);
      }
    }
    for (int i = 0; i < n; ++i) {
      auto s = std::make_unique<Sequence>(Sequence{
          req, i, choice_stream(r.seed, i), ChoiceBuilder(r.params), {nullptr, nullptr}, 0, {}, 0});
      if (generate) s->cache = i + 1 == n ? std::move(first) : m.copy_cache(*first);
      seqs.push_back(s.get());
      r.seqs.push_back(std::move(s));
    }
  } catch (...) {
    r.seqs.clear();
    fail(req, std::current_exception(), n, wake);
    return;
  }
  r.prefill_end = Clock::now();
  r.first_token = r.prefill_end;
  std::vector<Sequence*> cont;
  for (Sequence* s : seqs) {
    if (!generate) {
      s->builder.finish_empty();
      finish(*s, wake);
      continue;
    }
    bool done;
    try {
      done = advance(*s, logits_last, dist, wake);
    } catch (...) {
      s->cache.reset();
      fail(req, std::current_exception(), 1, wake);
      continue;
    }
    if (s == seqs.front()) r.first_token = Clock::now();
    if (done) {
      finish(*s, wake);
    } else {
      cont.push_back(s);
    }
  }
  requeue(cont, 0);
}

void Engine::Impl::decode_step(std::vector<Sequence*>& batch, std::vector<float>& logits,
                               TokenDistribution& dist, Wakeups& wake) {
  const model::Model& m = *batch.front()->req->model;
  const int vocab = m.config().vocab;
  // Rows of one adapter side by side: the model adds each adapter's term once per run of rows.
  std::stable_sort(batch.begin(), batch.end(), [](const Sequence* a, const Sequence* b) {
    return std::less<const model::Adapter*>()(a->req->adapter.get(), b->req->adapter.get());
  });
  std::vector<model::Model::Cache*> caches;
  std::vector<int> tokens;
  for (Sequence* s : batch) {
    caches.push_back(s->cache.get());
    tokens.push_back(s->next_input);
  }
  logits.resize(batch.size() * size_t(vocab));
  std::exception_ptr error;
  try {
    m.decode(caches, tokens, logits.data());
  } catch (...) {
    error = std::current_exception();
  }
  std::vector<Sequence*> cont;
  for (size_t b = 0; b < batch.size(); ++b) {
    Sequence& s = *batch[b];
    if (error) {
      s.cache.reset();
      fail(s.req, error, 1, wake);
      continue;
    }
    if (s.req->cancelled.load(std::memory_order_relaxed)) {
      s.cache.reset();
      fail(s.req, nullptr, 1, wake);
      continue;
    }
    bool done;
    try {
      done = advance(s, std::span<const float>(logits.data() + b * vocab, vocab), dist, wake);
    } catch (...) {
      s.cache.reset();
      fail(s.req, std::current_exception(), 1, wake);
      continue;
    }
    if (done) {
      finish(s, wake);
    } else {
      cont.push_back(&s);
    }
  }
  requeue(cont, int(batch.size()));
}

bool Engine::Impl::advance(Sequence& s, std::span<const float> logits, TokenDistribution& dist,
                           Wakeups& wake) {
  Request& r = *s.req;
  const SampledToken tok = sample_token(dist, logits, r.sampling, s.rng);
  const int id = tok.token;
  auto step = s.builder.add(tok, dist, model::decode_tokens(std::span<const int>(&id, 1)));
  s.next_input = id;
  if (r.streaming) {
    std::lock_guard lk(r.mu);
    r.events.push_back({s.index, std::move(step.token), std::move(step.released)});
    if (wake.empty() || wake.back() != s.req) wake.push_back(s.req);
  }
  return step.finished;
}

void Engine::Impl::finish(Sequence& s, Wakeups& wake) {
  s.cache.reset();
  std::shared_ptr<Request> r = s.req;  // s dies with the request once its caller returns
  bool last;
  {
    std::lock_guard lk(r->mu);
    last = --r->unfinished == 0;
  }
  if (last) wake.push_back(std::move(r));
}

void Engine::Impl::fail(const std::shared_ptr<Request>& r, std::exception_ptr e, int sequences,
                        Wakeups& wake) {
  bool last;
  {
    std::lock_guard lk(r->mu);
    if (e && !r->error) r->error = e;
    r->unfinished -= sequences;
    last = r->unfinished == 0;
  }
  if (last) wake.push_back(r);
}

void Engine::Impl::requeue(std::vector<Sequence*>& seqs, int stepped) {
  const Clock::time_point now = Clock::now();
  for (Sequence* s : seqs) s->ready_since = now;
  {
    std::lock_guard lk(mu);
    decoding -= stepped;
    for (Sequence* s : seqs) ready.push_back(s);
  }
  if (!seqs.empty()) work_cv.notify_all();
}

Engine::Engine(int threads) : impl_(std::make_unique<Impl>()) {
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  impl_->threads = threads;
  for (int i = 0; i < threads; ++i) impl_->workers.emplace_back([this] { impl_->worker_loop(); });
}

Engine::~Engine() {
  {
    std::lock_guard lk(impl_->mu);
    impl_->stopping = true;
  }
  impl_->work_cv.notify_all();
  for (auto& t : impl_->workers) t.join();
}

void Engine::set_model(std::shared_ptr<const model::Model> m, std::string snapshot_identity,
                       std::shared_ptr<const model::Adapter> adapter) {
  std::lock_guard lk(impl_->model_mu);
  impl_->model = std::move(m);
  impl_->adapter = std::move(adapter);
  impl_->identity = std::move(snapshot_identity);
}

std::shared_ptr<const model::Model> Engine::model() const {
  std::lock_guard lk(impl_->model_mu);
  return impl_->model;
}

std::string Engine::snapshot_identity() const {
  std::lock_guard lk(impl_->model_mu);
  return impl_->identity;
}

int Engine::active_requests() const {
  std::lock_guard lk(impl_->mu);
  return impl_->active;
}

Result Engine::complete(const std::vector<int>& prompt, const SamplingParams& p,
                        const TokenCallback& on_token, const std::function<void()>& on_flush,
                        std::shared_ptr<const model::Adapter> adapter) {
  auto req = std::make_shared<Request>();
  Request& r = *req;
  {
    std::lock_guard lk(impl_->model_mu);
    r.model = impl_->model;
    r.adapter = adapter ? std::move(adapter) : impl_->adapter;
    r.identity = impl_->identity;
  }
  if (!r.model) throw std::runtime_error("no model loaded: nothing can serve completions yet");
  validate_request(prompt, p, r.model->config());
  r.prompt = prompt;
  r.params = p;
  r.sampling = {p.temperature, p.top_p, p.top_k};
  r.seed = p.seed ? *p.seed : fresh_seed();
  r.streaming = static_cast<bool>(on_token);
  r.unfinished = p.n;
  r.enqueued = Clock::now();
  {
    std::lock_guard lk(impl_->mu);
    if (impl_->stopping) throw std::runtime_error("the engine is shutting down");
    impl_->pending.push_back(req);
    r.concurrent = ++impl_->active;
  }
  impl_->work_cv.notify_one();

  // Wait for the end, delivering stream events on this thread as they come.
  std::exception_ptr callback_error;
  std::unique_lock lk(r.mu);
  for (;;) {
    r.cv.wait(lk, [&] { return r.unfinished == 0 || !r.events.empty(); });
    if (!r.events.empty()) {
      std::deque<Event> batch;
      batch.swap(r.events);
      if (callback_error) continue;
      const bool more = r.unfinished > 0;
      lk.unlock();
      try {
        for (const Event& e : batch) on_token(e.index, e.token, e.text);
        if (more && on_flush) on_flush();
      } catch (...) {
        // The consumer is gone: stop generating, then report its error.
        callback_error = std::current_exception();
        r.cancelled = true;
      }
      lk.lock();
      continue;
    }
    if (r.unfinished == 0) break;
  }
  lk.unlock();
  {
    std::lock_guard alk(impl_->mu);
    --impl_->active;
  }
  // Cut the Request <-> Sequence ownership cycle once nothing else runs for it.
  std::vector<std::unique_ptr<Sequence>> seqs = std::move(r.seqs);
  r.seqs.clear();
  if (callback_error) std::rethrow_exception(callback_error);
  if (r.error) std::rethrow_exception(r.error);

  Result res;
  res.prompt_tokens = prompt;
  res.snapshot_identity = r.identity;
  res.choices.reserve(seqs.size());
  for (auto& s : seqs) {
    res.generation_queue_seconds = std::max(res.generation_queue_seconds, s->waited);
    res.choices.push_back(s->builder.take());
    Choice& c = res.choices.back();
    res.completion_tokens += int(c.tokens.size());
    if (p.echo) c.prompt_logprobs = r.prompt_lp;
  }
  res.queue_seconds = seconds(r.enqueued, r.prefill_start);
  res.prefill_seconds = seconds(r.prefill_start, r.prefill_end);
  res.total_seconds = seconds(r.enqueued, Clock::now());
  res.first_token_seconds =
      p.max_tokens > 0 ? seconds(r.enqueued, r.first_token) : res.total_seconds;
  res.concurrent_requests = r.concurrent;
  return res;
}

}  // namespace flare::engine
