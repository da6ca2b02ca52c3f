#include "emulator/engine/choice_builder.hpp"

#include <span>

namespace flare::engine {

ChoiceBuilder::ChoiceBuilder(const SamplingParams& p)
    : max_tokens_(p.max_tokens),
      keep_logprobs_(p.logprobs || p.top_logprobs > 0),
      top_logprobs_(p.top_logprobs),
      stop_(p.stop) {}

ChoiceBuilder::Step ChoiceBuilder::add(const SampledToken& s, const TokenDistribution& dist,
                                       std::string_view piece) {
  Step step;
  step.token.token = s.token;
  step.token.logprob = static_cast<float>(s.logprob);
  step.token.sampling_logprob = static_cast<float>(s.sampling_logprob);
  if (top_logprobs_ > 0) step.token.top = dist.top(top_logprobs_);

  choice_.tokens.push_back(s.token);
  if (keep_logprobs_) choice_.logprobs.push_back(step.token);

  const int token = s.token;
  const auto fed = stop_.feed(piece);
  step.released = fed.released;
  if (fed.stopped || token == model::kEos) {
    choice_.finish_reason = "stop";
  } else if (length() >= max_tokens_) {
    choice_.finish_reason = "length";
  }
  if (finished() && !fed.stopped) step.released += stop_.flush();
  step.finished = finished();
  return step;
}

void ChoiceBuilder::finish_empty() {
  choice_.finish_reason = "length";
}

Choice ChoiceBuilder::take() {
  choice_.text = stop_.text();
  return std::move(choice_);
}

std::vector<TokenLogprob> prompt_logprobs(const std::vector<int>& prompt, const float* logits_all,
                                          int vocab, int top_logprobs, TokenDistribution& dist) {
  std::vector<TokenLogprob> out(prompt.size());
  for (size_t i = 0; i < prompt.size(); ++i) {
    out[i].token = prompt[i];
    if (i == 0) continue;
    dist.set_logits(std::span<const float>(logits_all + (i - 1) * vocab, vocab));
    out[i].logprob = static_cast<float>(dist.logprob(prompt[i]));
    out[i].sampling_logprob = out[i].logprob;
    if (top_logprobs > 0) out[i].top = dist.top(top_logprobs);
  }
  return out;
}

}  // namespace flare::engine
