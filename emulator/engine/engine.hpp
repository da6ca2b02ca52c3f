#pragma once
// The inference engine of one deployment: sampling with temperature / top-p /
// top-k / stop / seed, per-token logprobs, and batching of concurrent requests
// over a small pool of worker threads. Weights are swapped atomically: requests
// in flight finish on the model they started with.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "emulator/model/model.hpp"

namespace flare::engine {

struct SamplingParams {
  int n = 1;
  int max_tokens = 16;
  double temperature = 1.0;
  double top_p = 1.0;
  int top_k = 0;  // 0 = off
  std::vector<std::string> stop;
  std::optional<uint64_t> seed;
  bool logprobs = false;
  int top_logprobs = 0;
  bool echo = false;
};

struct TokenLogprob {
  int token = 0;
  float logprob = 0;           // under the model distribution (temperature 1, no truncation)
  float sampling_logprob = 0;  // under the distribution actually sampled from
  std::vector<std::pair<int, float>> top;  // top_logprobs alternatives (model logprobs)
};

struct Choice {
  std::vector<int> tokens;                    // completion token ids
  std::string text;                           // completion text (stop string excluded)
  std::string finish_reason;                  // "stop" | "length"
  std::vector<TokenLogprob> logprobs;         // completion tokens, when requested
  std::vector<TokenLogprob> prompt_logprobs;  // with echo: prompt tokens (first has logprob 0)
};

struct Result {
  std::vector<int> prompt_tokens;
  std::vector<Choice> choices;
  std::string snapshot_identity;  // what served this request
  int completion_tokens = 0;
  // Server timing, measured: waiting for a worker to prefill (the prefill
  // queue), the shared prompt prefill, waiting between decode steps for a
  // worker (the generation queue: the longest total wait of one choice),
  // enqueue to the first sampled token, and the whole request from enqueue to
  // the last token.
  double queue_seconds = 0;
  double prefill_seconds = 0;
  double generation_queue_seconds = 0;
  double first_token_seconds = 0;
  double total_seconds = 0;
  int concurrent_requests = 0;  // requests in the engine when this one arrived, itself included
};

// Called for each generated token of choice `index` when streaming, on the
// thread that called complete() and never concurrently for one request. With
// echo, each choice first gets its prompt tokens (the first with the whole
// prompt's text, the others with none), as the echoed answer lists them.
// text_piece is the text that became safe to send: a stop string that may
// still complete, or half a UTF-8 character, is held back, so the pieces of a
// choice concatenate to exactly Choice::text. An exception thrown by the
// callback cancels the request and is rethrown by complete().
using TokenCallback =
    std::function<void(int index, const TokenLogprob& tok, const std::string& text_piece)>;

class Engine {
 public:
  explicit Engine(int threads = 0);  // 0 = hardware threads
  ~Engine();

  // Atomically replaces the serving model. nullptr = no weights loaded. With an
  // adapter, every request runs through base + adapter (applied per sequence at
  // run time, model::Model::new_cache; the model batches sequences of different
  // adapters in one forward).
  void set_model(std::shared_ptr<const model::Model> m, std::string snapshot_identity,
                 std::shared_ptr<const model::Adapter> adapter = nullptr);
  std::shared_ptr<const model::Model> model() const;
  std::string snapshot_identity() const;
  // Requests being served or waiting right now.
  int active_requests() const;

  // Blocking; concurrent callers are batched together. Throws std::invalid_argument
  // (naming the field) on bad parameters, std::runtime_error when no model is loaded.
  // When streaming, on_flush (if given) runs after each run of on_token calls
  // that leaves the request unfinished: the moment to send what was given so
  // far. Tokens delivered with the request's end get no flush of their own.
  // `adapter`, when given, is this request's LoRA adapter instead of the engine's
  // (set_model); requests with different adapters share decode steps, each
  // sequence's rows adding its own adapter's term.
  Result complete(const std::vector<int>& prompt, const SamplingParams& p,
                  const TokenCallback& on_token = nullptr,
                  const std::function<void()>& on_flush = nullptr,
                  std::shared_ptr<const model::Adapter> adapter = nullptr);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace flare::engine
