// Completion request bodies and response parsing.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "fireworks/completion_codec.hpp"
#include "runtime/error.hpp"

using namespace flare::fireworks;
using nlohmann::json;

TEST_CASE("request bodies are valid JSON with every option and escaped text") {
  Prompt text;
  text.is_text = true;
  text.text = "a \"quote\"\n\\ \x01 é";
  SamplingParams p;
  p.max_tokens = 7;
  p.temperature = 0.25;
  p.top_p = 0.9;
  p.top_k = 5;
  p.stop = {"\n\n", "END"};
  p.logprobs = true;
  p.top_logprobs = 3;
  p.echo = true;
  p.prompt_cache_max_len = 0;
  std::string body;
  write_completion_body(body, "accounts/a/deployments/d", text, p, 42);
  json j = json::parse(body);
  CHECK(j["model"] == "accounts/a/deployments/d");
  CHECK(j["prompt"] == text.text);
  CHECK(j["n"] == 1);
  CHECK(j["max_tokens"] == 7);
  CHECK(j["temperature"] == 0.25);
  CHECK(j["top_p"] == 0.9);
  CHECK(j["top_k"] == 5);
  CHECK(j["stop"] == json::array({"\n\n", "END"}));
  CHECK(j["seed"] == 42);
  CHECK(j["logprobs"] == true);
  CHECK(j["top_logprobs"] == 3);
  CHECK(j["echo"] == true);
  CHECK(j["prompt_cache_max_len"] == 0);
  CHECK(j["raw_output"] == true);
  CHECK(j["stream"] == false);

  Prompt ids;
  ids.tokens = {1, 2, 300};
  body.clear();
  write_completion_body(body, "m", ids, SamplingParams{}, std::nullopt);
  j = json::parse(body);
  CHECK(j["prompt"] == json::array({1, 2, 300}));
  CHECK_FALSE(j.contains("seed"));
  CHECK_FALSE(j.contains("logprobs"));
  CHECK_FALSE(j.contains("stop"));
}

TEST_CASE("responses give tokens, logprobs, finish reason and the snapshot") {
  Prompt prompt;
  prompt.tokens = {5, 6};
  SamplingParams p;
  p.logprobs = true;
  std::string body = R"({"model":"accounts/a/models/m@snap-1","choices":[{"index":0,"text":"xy",
    "finish_reason":"length","logprobs":{"content":[{"token_id":120,"token":"x","logprob":-1.5,
    "sampling_logprob":-1.25},{"token_id":121,"token":"y","logprob":-0.5}]},
    "raw_output":{"prompt_token_ids":[5,6],"completion_token_ids":[120,121]}}],
    "usage":{"prompt_tokens":2,"completion_tokens":2,"total_tokens":4}})";
  Completion c = parse_completion(body, prompt, p, nullptr);
  CHECK(c.text == "xy");
  CHECK(c.tokens == std::vector<int>{120, 121});
  CHECK(c.logprobs == std::vector<double>{-1.5, -0.5});
  CHECK(c.sampling_logprobs == std::vector<double>{-1.25, -0.5});
  CHECK(c.finish_reason == "length");
  CHECK(c.snapshot_identity == "snap-1");
  CHECK(c.prompt_tokens == std::vector<int>{5, 6});
  std::string header = "from-header";
  CHECK(parse_completion(body, prompt, p, &header).snapshot_identity == "from-header");
}

TEST_CASE("echo: the prompt is stripped from text and logprobs") {
  Prompt prompt;
  prompt.is_text = true;
  prompt.text = "ab";
  SamplingParams p;
  p.logprobs = true;
  p.echo = true;
  std::string body = R"({"choices":[{"text":"abc","finish_reason":"stop","logprobs":{"content":[
    {"token":"a","logprob":0},{"token":"b","logprob":-2},{"token":"c","logprob":-3}]},
    "raw_output":{"prompt_token_ids":[97,98],"completion_token_ids":[99]}}]})";
  Completion c = parse_completion(body, prompt, p, nullptr);
  CHECK(c.text == "c");
  CHECK(c.logprobs == std::vector<double>{-3});
  CHECK(c.prompt_logprobs == std::vector<double>{0, -2});
}

TEST_CASE("malformed responses raise bad_response naming the problem") {
  Prompt prompt;
  SamplingParams p;
  auto code_of = [&](const std::string& body) {
    try {
      parse_completion(body, prompt, p, nullptr);
    } catch (const flare::Error& e) {
      CHECK(e.retryable);
      return std::string(e.code) + ": " + e.what();
    }
    return std::string("no error");
  };
  CHECK(code_of(R"({"choices":[{"text":"x")").find("not valid JSON") != std::string::npos);
  CHECK(code_of(R"({"choices":[]})").find("non-empty list") != std::string::npos);
  CHECK(code_of(R"({"choices":[{"finish_reason":"stop"}]})").find("choices[0].text") !=
        std::string::npos);
  p.logprobs = true;
  CHECK(code_of(R"({"choices":[{"text":"x"}]})").find("logprobs") != std::string::npos);
}
