#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "emulator/engine/choice_builder.hpp"

using namespace flare::engine;
namespace model = flare::model;

namespace {

// Adds `tokens` as if sampled from a uniform distribution over the vocabulary.
struct Driver {
  TokenDistribution dist;
  std::vector<float> logits = std::vector<float>(model::kVocab, 0.0f);
  std::string streamed;
  int steps = 0;

  bool add(ChoiceBuilder& b, int token) {
    dist.set_logits(logits);
    SampledToken s{token, dist.logprob(token), dist.logprob(token)};
    std::string piece = token < 256 ? std::string(1, static_cast<char>(token)) : std::string();
    auto step = b.add(s, dist, piece);
    streamed += step.released;
    ++steps;
    CHECK(step.token.token == token);
    return step.finished;
  }
  // Feeds until finished; returns the number of tokens consumed.
  int run(ChoiceBuilder& b, const std::vector<int>& tokens) {
    for (int t : tokens)
      if (add(b, t)) break;
    return steps;
  }
};

std::vector<int> bytes(const std::string& s) {
  return {s.begin(), s.end()};
}

}  // namespace

TEST_CASE("max_tokens ends a choice with finish_reason length") {
  SamplingParams p;
  p.max_tokens = 3;
  ChoiceBuilder b(p);
  Driver d;
  CHECK(d.run(b, bytes("abcdef")) == 3);
  Choice c = b.take();
  CHECK(c.finish_reason == "length");
  CHECK(c.text == "abc");
  CHECK(c.tokens == bytes("abc"));
  CHECK(c.logprobs.empty());  // not requested
  CHECK(d.streamed == "abc");
}

TEST_CASE("EOS ends a choice with finish_reason stop and keeps the EOS token") {
  SamplingParams p;
  p.max_tokens = 10;
  p.logprobs = true;
  ChoiceBuilder b(p);
  Driver d;
  auto toks = bytes("hi");
  toks.push_back(model::kEos);
  toks.push_back('x');
  CHECK(d.run(b, toks) == 3);
  Choice c = b.take();
  CHECK(c.finish_reason == "stop");
  CHECK(c.text == "hi");
  REQUIRE(c.tokens.size() == 3);
  CHECK(c.tokens.back() == model::kEos);
  REQUIRE(c.logprobs.size() == 3);
  CHECK(c.logprobs[2].logprob == doctest::Approx(-std::log(double(model::kVocab))));
}

TEST_CASE("a stop string ends the choice; its text is excluded, its tokens kept") {
  SamplingParams p;
  p.max_tokens = 20;
  p.stop = {"\n\n"};
  p.top_logprobs = 2;
  ChoiceBuilder b(p);
  Driver d;
  CHECK(d.run(b, bytes("one\n\ntwo")) == 5);
  Choice c = b.take();
  CHECK(c.finish_reason == "stop");
  CHECK(c.text == "one");
  CHECK(c.tokens == bytes("one\n\n"));
  REQUIRE(c.logprobs.size() == 5);  // top_logprobs implies logprobs
  CHECK(c.logprobs[0].top.size() == 2);
  CHECK(d.streamed == "one");
}

TEST_CASE("a stop string completing on the last allowed token still reports stop") {
  SamplingParams p;
  p.max_tokens = 4;
  p.stop = {"cd"};
  ChoiceBuilder b(p);
  Driver d;
  d.run(b, bytes("abcd"));
  Choice c = b.take();
  CHECK(c.finish_reason == "stop");
  CHECK(c.text == "ab");
}

TEST_CASE("held-back text is streamed when the choice ends by length") {
  SamplingParams p;
  p.max_tokens = 3;
  p.stop = {"xyz"};
  ChoiceBuilder b(p);
  Driver d;
  d.run(b, bytes("axy"));
  Choice c = b.take();
  CHECK(c.finish_reason == "length");
  CHECK(c.text == "axy");
  CHECK(d.streamed == "axy");
}

TEST_CASE("max_tokens 0 gives an empty choice with finish_reason length") {
  SamplingParams p;
  p.max_tokens = 0;
  ChoiceBuilder b(p);
  b.finish_empty();
  CHECK(b.finished());
  Choice c = b.take();
  CHECK(c.finish_reason == "length");
  CHECK(c.tokens.empty());
  CHECK(c.text.empty());
}

TEST_CASE("prompt logprobs: first token 0, then the previous position's distribution") {
  const int vocab = 4;
  // position 0 prefers token 2, position 1 prefers token 3
  std::vector<float> logits_all = {0, 0, 5, 0,  //
                                   0, 0, 0, 5,  //
                                   1, 1, 1, 1};
  std::vector<int> prompt = {1, 2, 3};
  TokenDistribution dist;
  auto lp = prompt_logprobs(prompt, logits_all.data(), vocab, 1, dist);
  REQUIRE(lp.size() == 3);
  CHECK(lp[0].token == 1);
  CHECK(lp[0].logprob == 0.0f);
  CHECK(lp[0].top.empty());
  const double z = std::log(3.0 + std::exp(5.0));
  CHECK(lp[1].logprob == doctest::Approx(5.0 - z).epsilon(1e-6));
  CHECK(lp[2].logprob == doctest::Approx(5.0 - z).epsilon(1e-6));
  CHECK(lp[1].sampling_logprob == lp[1].logprob);
  REQUIRE(lp[1].top.size() == 1);
  CHECK(lp[1].top[0].first == 2);
  CHECK(lp[2].top[0].first == 3);
}
