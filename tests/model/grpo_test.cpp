// A whole GRPO loop in-process: sample groups from the inference model,
// reward completions made of vowels, mean-centred advantages,
// importance_sampling, AdamW, refresh the sampler from the trainer.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>

#include "emulator/model/model.hpp"

using namespace flare::model;

namespace {

int sample(const std::vector<float>& logits, std::mt19937_64& rng, float* logprob) {
  double mx = logits[0];
  for (float l : logits) mx = std::max(mx, double(l));
  std::vector<double> p(logits.size());
  double z = 0;
  for (size_t v = 0; v < p.size(); ++v) z += p[v] = std::exp(double(logits[v]) - mx);
  double u = std::uniform_real_distribution<double>(0.0, z)(rng);
  size_t tok = 0;
  while (tok + 1 < p.size() && u >= p[tok]) u -= p[tok++];
  *logprob = float(std::log(p[tok] / z));
  return int(tok);
}

}  // namespace

TEST_CASE("GRPO with importance sampling learns to answer in vowels") {
  const Config c = *builtin("tiny-gpt");
  Trainer trainer(c, init_weights(c), 2);
  std::mt19937_64 rng(1);
  const std::string vowels = "aeiou";
  const std::vector<int> prompt = {kBos, 'S', 'a', 'y', ':'};
  const int group = 8, completion = 4;
  AdamParams adam;
  adam.learning_rate = 3e-3;
  std::vector<double> mean_rewards;
  for (int step = 0; step < 60; ++step) {
    const Model sampler(c, trainer.sampler_weights());
    std::vector<Datum> data;
    std::vector<double> rewards;
    double mean = 0;
    for (int g = 0; g < group; ++g) {
      auto cache = sampler.new_cache();
      std::vector<float> logits(c.vocab);
      sampler.prefill(*cache, prompt, nullptr, logits.data());
      std::vector<int> seq = prompt;
      Datum d;
      d.sampler_logprobs.assign(prompt.size() - 1, 0.0f);
      double reward = 0;
      for (int t = 0; t < completion; ++t) {
        float lp = 0;
        const int tok = sample(logits, rng, &lp);
        seq.push_back(tok);
        d.sampler_logprobs.push_back(lp);
        if (tok < 256 && vowels.find(char(tok)) != std::string::npos) reward += 1.0 / completion;
        Model::Cache* cp = cache.get();
        sampler.decode(std::span<Model::Cache* const>(&cp, 1), std::span<const int>(&tok, 1),
                       logits.data());
      }
      d.tokens.assign(seq.begin(), seq.end() - 1);
      d.target_tokens.assign(seq.begin() + 1, seq.end());
      data.push_back(std::move(d));
      rewards.push_back(reward);
      mean += reward / group;
    }
    for (int g = 0; g < group; ++g) {
      data[g].advantages.assign(data[g].tokens.size(), 0.0f);
      for (int t = 0; t < completion; ++t)
        data[g].advantages[prompt.size() - 1 + t] = float(rewards[g] - mean);
    }
    const ForwardBackwardResult r = trainer.forward_backward(data, LossFn::ImportanceSampling, {});
    if (mean > 0 && mean < 1) {  // some advantage is nonzero: sampler and trainer agree
      CHECK(r.mean_ratio == doctest::Approx(1.0).epsilon(1e-3));
      CHECK(std::fabs(r.logprob_mismatch) < 1e-5);
    }
    trainer.optim_step(adam);
    mean_rewards.push_back(mean);
  }
  double last = 0;
  for (int i = 50; i < 60; ++i) last += mean_rewards[i] / 10;
  INFO("first reward ", mean_rewards[0], ", mean of the last 10 steps ", last);
  CHECK(mean_rewards[0] < 0.2);
  CHECK(last >= 0.8);
}
