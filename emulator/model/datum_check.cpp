#include "emulator/model/datum_check.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

namespace flare::model::detail {

namespace {

[[noreturn]] void fail(size_t i, const char* field, const std::string& what) {
  throw std::invalid_argument("data[" + std::to_string(i) + "]." + field + ": " + what);
}

void check_length(size_t i, const char* field, size_t got, size_t want, bool may_be_empty) {
  if (got == want || (may_be_empty && got == 0)) return;
  fail(i, field,
       "length " + std::to_string(got) + " does not match tokens length " + std::to_string(want));
}

void check_tokens(size_t i, const char* field, const std::vector<int>& tokens, int vocab) {
  for (size_t t = 0; t < tokens.size(); ++t)
    if (tokens[t] < 0 || tokens[t] >= vocab)
      fail(i, field,
           "token " + std::to_string(tokens[t]) + " at position " + std::to_string(t) +
               " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
}

void check_finite(size_t i, const char* field, const std::vector<float>& values) {
  for (size_t t = 0; t < values.size(); ++t)
    if (!std::isfinite(values[t]))
      fail(i, field, "value at position " + std::to_string(t) + " is not finite");
}

}  // namespace

void check_data(const Config& cfg, const std::vector<Datum>& data, LossFn loss,
                const LossConfig& lc) {
  check_loss_config(loss, lc);
  const std::string name = loss_name(loss);
  const bool needs_advantages = loss != LossFn::CrossEntropy && loss != LossFn::Dpo;
  const bool needs_sampler = (needs_advantages && loss != LossFn::Reinforce) || lc.tis_cap > 0;
  const bool needs_ref = loss == LossFn::Dpo || lc.kl_beta > 0;
  const std::string ref_why = loss == LossFn::Dpo ? "dpo" : "kl_beta > 0";
  if (loss == LossFn::Dpo && data.size() % 2 != 0)
    throw std::invalid_argument("data: dpo takes (chosen, rejected) pairs, got " +
                                std::to_string(data.size()) + " datums");
  for (size_t i = 0; i < data.size(); ++i) {
    const Datum& d = data[i];
    const size_t n = d.tokens.size();
    if (n == 0) fail(i, "tokens", "is empty");
    if (n > size_t(cfg.max_seq))
      fail(i, "tokens",
           "length " + std::to_string(n) + " exceeds max_seq " + std::to_string(cfg.max_seq));
    check_length(i, "target_tokens", d.target_tokens.size(), n, false);
    check_length(i, "weights", d.weights.size(), n, true);
    check_length(i, "sampler_logprobs", d.sampler_logprobs.size(), n, true);
    check_length(i, "advantages", d.advantages.size(), n, true);
    check_length(i, "ref_logprobs", d.ref_logprobs.size(), n, true);
    check_tokens(i, "tokens", d.tokens, cfg.vocab);
    check_tokens(i, "target_tokens", d.target_tokens, cfg.vocab);
    check_finite(i, "weights", d.weights);
    check_finite(i, "sampler_logprobs", d.sampler_logprobs);
    check_finite(i, "advantages", d.advantages);
    check_finite(i, "ref_logprobs", d.ref_logprobs);
    if (needs_advantages && d.advantages.empty()) fail(i, "advantages", "required by " + name);
    if (needs_sampler && d.sampler_logprobs.empty())
      fail(i, "sampler_logprobs", "required by " + (lc.tis_cap > 0 ? "tis_cap" : name));
    if (needs_ref && d.ref_logprobs.empty()) fail(i, "ref_logprobs", "required by " + ref_why);
  }
}

}  // namespace flare::model::detail

namespace flare::model {

void check_loss_config(LossFn loss, const LossConfig& c) {
  auto bad = [](const char* field, const std::string& what) {
    throw std::invalid_argument(std::string("loss_fn_config.") + field + ": " + what);
  };
  auto finite = [&](const char* field, double v) {
    if (!std::isfinite(v)) bad(field, "must be a finite number");
  };
  finite("clip_low", c.clip_low);
  finite("clip_high", c.clip_high);
  finite("normalization_tokens", c.normalization_tokens);
  finite("tis_cap", c.tis_cap);
  finite("kl_beta", c.kl_beta);
  finite("dpo_beta", c.dpo_beta);
  if (c.clip_low < 0 || c.clip_low >= 1 || c.clip_high < 0)
    bad("clip_low", "the clip range [1 - " + std::to_string(c.clip_low) + ", 1 + " +
                        std::to_string(c.clip_high) + "] is empty or inverted");
  if (c.normalization == Normalization::Constant && !(c.normalization_tokens > 0))
    bad("normalization_tokens", "must be > 0 with normalization 'constant'");
  if (c.normalization != Normalization::Constant && c.normalization_tokens != 0)
    bad("normalization_tokens", "only applies to normalization 'constant'");
  if (c.tis_cap < 0) bad("tis_cap", "must be >= 0 (0 = off)");
  if (c.tis_cap > 0 && loss != LossFn::ImportanceSampling && loss != LossFn::Ppo &&
      loss != LossFn::Grpo && loss != LossFn::DrGrpo && loss != LossFn::Reinforce)
    bad("tis_cap", std::string("does not apply to ") + loss_name(loss) +
                       " (it does to importance_sampling, ppo, grpo, dr_grpo and reinforce)");
  if (c.kl_beta < 0) bad("kl_beta", "must be >= 0");
  if (c.kl_beta > 0 && loss == LossFn::Dpo)
    bad("kl_beta", "does not apply to dpo (its dpo_beta ties it to the reference)");
  if (!(c.dpo_beta > 0)) bad("dpo_beta", "must be > 0");
}

}  // namespace flare::model
