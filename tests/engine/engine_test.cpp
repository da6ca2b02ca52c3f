#include <doctest/doctest.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine_fixture.hpp"

using namespace flare::engine;
using namespace engine_test;

TEST_CASE("without a model the engine refuses to serve") {
  Engine e(1);
  CHECK_THROWS_AS(e.complete({1, 2}, SamplingParams{}), std::runtime_error);
  CHECK(e.model() == nullptr);
}

TEST_CASE("greedy decoding follows the model's argmax and reports logprobs") {
  Engine e(2);
  auto m = tiny_model();
  e.set_model(m, "snap-a");
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 12;
  p.logprobs = true;
  const auto prompt = text_prompt("Hello, world");
  Result r = e.complete(prompt, p);
  CHECK(r.snapshot_identity == "snap-a");
  CHECK(r.prompt_tokens == prompt);
  REQUIRE(r.choices.size() == 1);
  const Choice& c = r.choices[0];
  CHECK(c.tokens == reference_greedy(*m, prompt, 12));
  REQUIRE(c.logprobs.size() == c.tokens.size());
  const auto ref = reference_logprobs(*m, prompt, c.tokens);
  for (size_t k = 0; k < c.tokens.size(); ++k) {
    CHECK(c.logprobs[k].token == c.tokens[k]);
    CHECK(std::abs(c.logprobs[k].logprob - ref[k]) < 1e-5);
    CHECK(c.logprobs[k].sampling_logprob == 0.0f);
  }
  CHECK(r.completion_tokens == int(c.tokens.size()));
}

TEST_CASE("logprobs of a sampled sequence equal the model's prefill logprobs") {
  Engine e(2);
  auto m = tiny_model();
  e.set_model(m, "snap-a");
  SamplingParams p;
  p.n = 4;
  p.max_tokens = 40;
  p.temperature = 1.3;
  p.top_k = 50;
  p.top_p = 0.9;
  p.seed = 11;
  p.logprobs = true;
  const auto prompt = text_prompt("The quick brown fox");
  Result r = e.complete(prompt, p);
  REQUIRE(r.choices.size() == 4);
  for (const Choice& c : r.choices) {
    REQUIRE(c.logprobs.size() == c.tokens.size());
    const auto ref = reference_logprobs(*m, prompt, c.tokens);
    for (size_t k = 0; k < c.tokens.size(); ++k) {
      CHECK(std::abs(c.logprobs[k].logprob - ref[k]) < 1e-5);
      // truncation and temperature 1.3 flatten the kept set: sampled tokens are
      // always in it, and a kept token is never less likely than under the model
      CHECK(std::isfinite(c.logprobs[k].sampling_logprob));
      CHECK(c.logprobs[k].sampling_logprob <= 0.0f);
    }
  }
  // choices are independent streams
  CHECK(r.choices[0].tokens != r.choices[1].tokens);
}

TEST_CASE("choice i of a seeded request depends only on the seed and i") {
  Engine e(2);
  e.set_model(tiny_model(), "snap-a");
  SamplingParams p;
  p.max_tokens = 20;
  p.seed = 2024;
  const auto prompt = text_prompt("abc");
  p.n = 3;
  Result three = e.complete(prompt, p);
  p.n = 1;
  Result one = e.complete(prompt, p);
  CHECK(one.choices[0].tokens == three.choices[0].tokens);
  CHECK(one.choices[0].text == three.choices[0].text);
  Result again = e.complete(prompt, p);
  CHECK(again.choices[0].tokens == one.choices[0].tokens);
  p.seed = 2025;
  Result other = e.complete(prompt, p);
  CHECK(other.choices[0].tokens != one.choices[0].tokens);
}

TEST_CASE("without a seed each request draws fresh randomness") {
  Engine e(2);
  e.set_model(tiny_model(), "snap-a");
  SamplingParams p;
  p.max_tokens = 24;
  const auto prompt = text_prompt("abc");
  CHECK(e.complete(prompt, p).choices[0].tokens != e.complete(prompt, p).choices[0].tokens);
}

TEST_CASE("top_k 1 samples the argmax") {
  Engine e(1);
  auto m = tiny_model();
  e.set_model(m, "snap-a");
  SamplingParams p;
  p.max_tokens = 10;
  p.top_k = 1;
  p.seed = 3;
  p.logprobs = true;
  const auto prompt = text_prompt("xyz");
  Result r = e.complete(prompt, p);
  CHECK(r.choices[0].tokens == reference_greedy(*m, prompt, 10));
  for (const auto& t : r.choices[0].logprobs) CHECK(t.sampling_logprob == 0.0f);
}

TEST_CASE("top_logprobs lists the model's most likely alternatives") {
  Engine e(1);
  e.set_model(tiny_model(), "snap-a");
  SamplingParams p;
  p.max_tokens = 6;
  p.top_logprobs = 3;
  p.seed = 1;
  Result r = e.complete(text_prompt("hi"), p);
  const Choice& c = r.choices[0];
  REQUIRE(c.logprobs.size() == 6);
  for (const auto& t : c.logprobs) {
    REQUIRE(t.top.size() == 3);
    CHECK(t.top[0].second >= t.top[1].second);
    CHECK(t.top[1].second >= t.top[2].second);
    CHECK(t.logprob <= t.top[0].second);
  }
}

TEST_CASE("a stop string cuts the text and ends the choice with stop") {
  Engine e(2);
  e.set_model(tiny_model(), "snap-a");
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 40;
  const auto prompt = text_prompt("Once upon a time");
  Result free_run = e.complete(prompt, p);
  const std::string full = free_run.choices[0].text;
  REQUIRE(full.size() >= 12);
  const std::string stop = full.substr(6, 3);  // spans three byte tokens
  const size_t at = full.find(stop);
  p.stop = {stop, "never-generated-\x01"};
  Result r = e.complete(prompt, p);
  const Choice& c = r.choices[0];
  CHECK(c.finish_reason == "stop");
  CHECK(c.text == full.substr(0, at));
  // tokens run up to the one that completed the stop string
  CHECK(c.tokens.size() == at + stop.size());
  CHECK(free_run.choices[0].finish_reason == "length");
  CHECK(free_run.choices[0].tokens.size() == 40);
}

TEST_CASE("EOS ends a choice with stop; max_tokens with length") {
  Engine e(2);
  e.set_model(tiny_model(), "snap-a");
  SamplingParams p;
  p.n = 64;
  p.max_tokens = 64;
  p.temperature = 1.0;
  p.seed = 77;
  Result r = e.complete(text_prompt("?"), p);
  int stopped = 0, lengthy = 0;
  for (const Choice& c : r.choices) {
    REQUIRE_FALSE(c.tokens.empty());
    if (c.finish_reason == "stop") {
      ++stopped;
      CHECK(c.tokens.back() == flare::model::kEos);
      CHECK(c.tokens.size() <= 64);
    } else {
      ++lengthy;
      CHECK(c.finish_reason == "length");
      CHECK(c.tokens.size() == 64);
      for (int t : c.tokens) CHECK(t != flare::model::kEos);
    }
  }
  // ~1/258 per token over 4096 tokens: both endings occur with this seed
  CHECK(stopped > 0);
  CHECK(lengthy > 0);
}

TEST_CASE("echo returns the prompt's logprobs") {
  Engine e(1);
  auto m = tiny_model();
  e.set_model(m, "snap-a");
  SamplingParams p;
  p.echo = true;
  p.max_tokens = 0;
  p.top_logprobs = 2;
  const auto prompt = text_prompt("scoring this text");
  Result r = e.complete(prompt, p);
  REQUIRE(r.choices.size() == 1);
  const Choice& c = r.choices[0];
  CHECK(c.tokens.empty());
  CHECK(c.finish_reason == "length");
  REQUIRE(c.prompt_logprobs.size() == prompt.size());
  CHECK(c.prompt_logprobs[0].logprob == 0.0f);
  const std::vector<int> head(prompt.begin(), prompt.begin() + 1);
  const std::vector<int> rest(prompt.begin() + 1, prompt.end());
  const auto ref = reference_logprobs(*m, head, rest);
  for (size_t i = 1; i < prompt.size(); ++i) {
    CHECK(c.prompt_logprobs[i].token == prompt[i]);
    CHECK(std::abs(c.prompt_logprobs[i].logprob - ref[i - 1]) < 1e-5);
    CHECK(c.prompt_logprobs[i].top.size() == 2);
  }
  CHECK(r.completion_tokens == 0);
}

TEST_CASE("streaming delivers every token and pieces that add up to the text") {
  Engine e(2);
  e.set_model(tiny_model(), "snap-a");
  SamplingParams p;
  p.n = 3;
  p.max_tokens = 30;
  p.seed = 5;
  p.stop = {"e"};
  std::vector<std::vector<int>> tokens(3);
  std::vector<std::string> text(3);
  Result r = e.complete(text_prompt("stream"), p,
                        [&](int i, const TokenLogprob& t, const std::string& piece) {
                          tokens.at(i).push_back(t.token);
                          text.at(i) += piece;
                        });
  for (int i = 0; i < 3; ++i) {
    CHECK(tokens[i] == r.choices[i].tokens);
    CHECK(text[i] == r.choices[i].text);
    CHECK(r.choices[i].text.find('e') == std::string::npos);
  }
}

TEST_CASE("streaming with echo gives the prompt first; flushes come only mid-request") {
  Engine e(1);
  e.set_model(tiny_model(), "snap-a");
  SamplingParams p;
  p.echo = true;
  p.max_tokens = 12;
  p.seed = 3;
  const auto prompt = text_prompt("echo me");
  std::vector<int> seen;
  std::string text;
  int flushes = 0;
  std::size_t at_last_flush = 0;
  Result r = e.complete(
      prompt, p,
      [&](int, const TokenLogprob& t, const std::string& piece) {
        seen.push_back(t.token);
        text += piece;
      },
      [&] {
        ++flushes;
        at_last_flush = seen.size();
      });
  std::vector<int> want = prompt;
  want.insert(want.end(), r.choices[0].tokens.begin(), r.choices[0].tokens.end());
  CHECK(seen == want);
  CHECK(text == "echo me" + r.choices[0].text);
  // Flushes only mid-request (how many depends on thread timing): the tokens delivered with
  // the request's end are never followed by one.
  CHECK(at_last_flush < seen.size());
  CHECK(flushes <= static_cast<int>(seen.size()));
  // The engine's own measurements, as the server reports them.
  CHECK(r.first_token_seconds > 0);
  CHECK(r.first_token_seconds <= r.total_seconds);
  CHECK(r.queue_seconds <= r.first_token_seconds);
  CHECK(r.generation_queue_seconds >= 0);
  CHECK(r.concurrent_requests == 1);
}

TEST_CASE("a failing stream callback cancels the request and its error reaches the caller") {
  Engine e(2);
  e.set_model(tiny_model(), "snap-a");
  SamplingParams p;
  p.n = 2;
  p.max_tokens = 200;
  int calls = 0;
  CHECK_THROWS_WITH(e.complete(text_prompt("x"), p,
                               [&](int, const TokenLogprob&, const std::string&) {
                                 if (++calls == 3) throw std::runtime_error("client went away");
                               }),
                    "client went away");
  // the engine keeps serving (seeded: unseeded, the untrained model samples EOS early now and then)
  p.n = 1;
  p.max_tokens = 3;
  p.seed = 1;
  CHECK(e.complete(text_prompt("x"), p).choices[0].tokens.size() == 3);
}

TEST_CASE("invalid requests are rejected naming the field") {
  Engine e(1);
  e.set_model(tiny_model(), "snap-a");
  auto error_of = [&](std::vector<int> prompt, auto edit) -> std::string {
    SamplingParams p;
    edit(p);
    try {
      e.complete(prompt, p);
    } catch (const std::invalid_argument& ex) {
      return ex.what();
    }
    return "";
  };
  auto none = [](SamplingParams&) {};
  CHECK(error_of({}, none).rfind("prompt:", 0) == 0);
  CHECK(error_of({300}, none).rfind("prompt:", 0) == 0);
  CHECK(error_of({1}, [](SamplingParams& p) { p.n = 0; }).rfind("n:", 0) == 0);
  CHECK(error_of({1}, [](SamplingParams& p) { p.n = 129; }).rfind("n:", 0) == 0);
  CHECK(error_of({1}, [](SamplingParams& p) { p.max_tokens = -2; }).rfind("max_tokens:", 0) == 0);
  CHECK(error_of({1, 2}, [](SamplingParams& p) { p.max_tokens = 255; }).rfind("max_tokens:", 0) ==
        0);
  CHECK(error_of({1}, [](SamplingParams& p) { p.temperature = -1; }).rfind("temperature:", 0) == 0);
  CHECK(error_of({1}, [](SamplingParams& p) { p.top_p = 0; }).rfind("top_p:", 0) == 0);
  CHECK(error_of({1}, [](SamplingParams& p) { p.top_k = -3; }).rfind("top_k:", 0) == 0);
  // the longest allowed request still runs
  SamplingParams p;
  p.max_tokens = 254;
  p.temperature = 0;
  CHECK(e.complete({1, 2}, p).choices[0].tokens.size() <= 254);
}
