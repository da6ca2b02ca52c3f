#pragma once
// The bookkeeping of one choice while it is generated: token ids, per-token
// logprobs when requested, completion text with stop strings cut off, and the
// finish reason (EOS or a stop string -> "stop", max_tokens -> "length").
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "emulator/engine/engine.hpp"
#include "emulator/engine/sampling.hpp"
#include "emulator/engine/stop_matcher.hpp"

namespace flare::engine {

class ChoiceBuilder {
 public:
  explicit ChoiceBuilder(const SamplingParams& p);

  struct Step {
    bool finished = false;
    TokenLogprob token;    // the token just added, with its logprobs
    std::string released;  // text now safe to stream (may be empty)
  };
  // Adds a sampled token whose text is `piece`; `dist` holds the distribution
  // it was sampled from (used for top_logprobs alternatives).
  Step add(const SampledToken& s, const TokenDistribution& dist, std::string_view piece);
  // Ends a choice that produced no tokens (max_tokens = 0).
  void finish_empty();

  bool finished() const { return !choice_.finish_reason.empty(); }
  int length() const { return static_cast<int>(choice_.tokens.size()); }
  // The finished choice (text, tokens, finish_reason, logprobs).
  Choice take();

 private:
  int max_tokens_;
  bool keep_logprobs_;
  int top_logprobs_;
  StopMatcher stop_;
  Choice choice_;
};

// Logprobs of the prompt tokens for echo: position 0 has no distribution and
// gets logprob 0; position i uses the logits of position i - 1. logits_all is
// prompt.size() x vocab. sampling_logprob equals logprob: nothing was sampled.
std::vector<TokenLogprob> prompt_logprobs(const std::vector<int>& prompt, const float* logits_all,
                                          int vocab, int top_logprobs, TokenDistribution& dist);

}  // namespace flare::engine
