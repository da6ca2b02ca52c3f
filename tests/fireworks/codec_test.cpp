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
  // One entry without sampling_logprob: the SDK keeps None there, so no list is whole.
  CHECK(c.sampling_source == SamplingLogprobs::Missing);
  CHECK(c.sampling_logprobs.empty());
  CHECK(c.finish_reason == "length");
  CHECK(c.snapshot_identity == "snap-1");
  CHECK(c.prompt_tokens == std::vector<int>{5, 6});
  std::string header = "from-header";
  CHECK(parse_completion(body, prompt, p, &header).snapshot_identity == "from-header");
}

// The SDK's _parse_completions_result with echo: completion_token_ids hold
// P + C ids, the prompt prefix is checked and stripped, and the logprob lists
// drop their first entry: P + C - 1 training-aligned entries, logprobs_echoed.
TEST_CASE("echo: SDK training-aligned P+C-1 logprobs, prompt prefix stripped from the ids") {
  Prompt prompt;
  prompt.tokens = {97, 98};
  SamplingParams p;
  p.logprobs = true;
  p.echo = true;
  std::string body = R"({"choices":[{"text":"abc","finish_reason":"stop","logprobs":{"content":[
    {"token":"a","logprob":0,"sampling_logprob":0},{"token":"b","logprob":-2,"sampling_logprob":-2},
    {"token":"c","logprob":-3,"sampling_logprob":-2.5}]},
    "raw_output":{"prompt_token_ids":[97,98],"completion_token_ids":[97,98,99]}}]})";
  Completion c = parse_completion(body, prompt, p, nullptr);
  CHECK(c.text == "abc");  // as sent, as the SDK keeps it
  CHECK(c.tokens == std::vector<int>{99});
  CHECK(c.prompt_tokens == std::vector<int>{97, 98});
  CHECK(c.logprobs == std::vector<double>{-2, -3});  // P + C - 1 = 2
  CHECK(c.sampling_logprobs == std::vector<double>{-2, -2.5});
  CHECK(c.logprobs_echoed);
  // Ids without the prompt prefix are the SDK's "Echo response format mismatch": not retried.
  std::string wrong = R"({"choices":[{"text":"abc","finish_reason":"stop","logprobs":{"content":[
    {"logprob":0},{"logprob":-2},{"logprob":-3}]},"raw_output":{"completion_token_ids":[99]}}]})";
  try {
    parse_completion(wrong, prompt, p, nullptr);
    FAIL("no error");
  } catch (const flare::Error& e) {
    CHECK(std::string(e.what()).find("do not start with the 2 prompt tokens") != std::string::npos);
    CHECK_FALSE(e.retryable);
  }
}

// The SDK's _raw_logprobs_match_sampling_params: raw logprobs stand in for
// missing sampling_logprob only at temperature=1, top_p=1, top_k=0.
TEST_CASE("sampling_logprob falls back to logprob only at T=1, top_p=1, top_k=0 (SDK)") {
  Prompt prompt;
  prompt.tokens = {5};
  std::string body = R"({"choices":[{"text":"x","finish_reason":"length","logprobs":{"content":[
    {"logprob":-1.5},{"logprob":-0.5}]},"raw_output":{"completion_token_ids":[120,121]}}]})";
  SamplingParams p;
  p.logprobs = true;
  Completion full = parse_completion(body, prompt, p, nullptr);
  CHECK(full.sampling_source == SamplingLogprobs::Fallback);
  CHECK(full.sampling_logprobs == std::vector<double>{-1.5, -0.5});
  for (int which = 0; which < 3; ++which) {
    SamplingParams q = p;
    if (which == 0) q.temperature = 0.7;
    if (which == 1) q.top_p = 0.9;
    if (which == 2) q.top_k = 40;
    Completion c = parse_completion(body, prompt, q, nullptr);
    CHECK(c.sampling_source == SamplingLogprobs::Missing);
    CHECK(c.sampling_logprobs.empty());
    CHECK(c.logprobs == std::vector<double>{-1.5, -0.5});
  }
}

// The SDK's async_completions_stream: text deltas concatenated, logprob
// entries extended, the last raw_output/finish_reason/usage kept, and
// ServerMetrics from perf_metrics of the final chunk.
TEST_CASE("streamed answers are assembled as the SDK assembles them, perf_metrics read") {
  Prompt prompt;
  prompt.tokens = {1, 2};
  SamplingParams p;
  p.stream = true;
  std::string body =
      "data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"raw_output\":"
      "{\"completion_token_ids\":[104]},\"text\":\"h\"}],\"model\":\"m@snap-3\"}\n\n"
      "data: {\"choices\":[{\"index\":0,\"text\":\"i\",\"finish_reason\":null}]}\n\n"
      "data: {\"choices\":[{\"finish_reason\":\"length\",\"index\":0,\"raw_output\":"
      "{\"completion_token_ids\":[104,105],\"prompt_token_ids\":[1,2]},\"text\":\"\"}],"
      "\"usage\":{\"completion_tokens\":2,\"prompt_tokens\":2},\"perf_metrics\":{"
      "\"prefill-queue-duration\":\"0.250000\",\"num-concurrent-requests\":\"7\","
      "\"server-time-to-first-token\":\"0.3\",\"cached-prompt-tokens\":\"0\"}}\n\n"
      "data: [DONE]\n\n";
  for (bool logprobs : {false, true}) {
    SamplingParams q = p;
    std::string b = body;
    if (logprobs) {  // the DOM path: the same answer with logprob entries
      q.logprobs = true;
      b.replace(
          b.find("\"text\":\"h\""), 10,
          "\"text\":\"h\",\"logprobs\":{\"content\":[{\"logprob\":-1,\"sampling_logprob\":-1}]}");
      b.replace(
          b.find("\"text\":\"i\""), 10,
          "\"text\":\"i\",\"logprobs\":{\"content\":[{\"logprob\":-2,\"sampling_logprob\":-2}]}");
    }
    Completion c = parse_completion(b, prompt, q, nullptr);
    CHECK(c.text == "hi");
    CHECK(c.tokens == std::vector<int>{104, 105});
    CHECK(c.finish_reason == "length");
    CHECK(c.snapshot_identity == "snap-3");
    CHECK(c.have_perf_metrics);
    CHECK(c.metrics.prefill_queue_duration == 0.25);
    CHECK(c.metrics.num_concurrent_requests == 7);
    CHECK(c.metrics.server_ttft == 0.3);
    CHECK(c.metrics.cached_prompt_tokens == 0);
    CHECK(c.metrics.generation_queue_duration < 0);  // not reported
    if (logprobs) CHECK(c.logprobs == std::vector<double>{-1, -2});
  }
}

// The SDK's _SSETruncationError: a stream closed without [DONE],
// finish_reason or raw_output is transient (retried).
TEST_CASE("a stream cut mid-generation is the SDK's retryable SSE truncation") {
  Prompt prompt;
  prompt.tokens = {1};
  SamplingParams p;
  p.stream = true;
  std::string body =
      "data: {\"choices\":[{\"index\":0,\"text\":\"h\",\"finish_reason\":null}]}\n\n";
  try {
    parse_completion(body, prompt, p, nullptr);
    FAIL("no error");
  } catch (const flare::Error& e) {
    CHECK(std::string(e.what()).find("ended mid-generation") != std::string::npos);
    CHECK(e.retryable);
  }
  // A server that ignores stream: true and answers with one body is read as such.
  Completion plain =
      parse_completion(R"({"choices":[{"text":"h","raw_output":{"completion_token_ids":[104]}}]})",
                       prompt, p, nullptr);
  CHECK(plain.tokens == std::vector<int>{104});
  // The request body asks for the stream and the SDK's perf_metrics_in_response.
  std::string req;
  write_completion_body(req, "m", prompt, p, std::nullopt);
  json j = json::parse(req);
  CHECK(j["stream"] == true);
  CHECK(j["perf_metrics_in_response"] == true);
}

// ServerMetrics.from_headers: a value that does not parse is left unset.
TEST_CASE("server metrics under the SDK's names; unparsable values unset") {
  ServerMetrics m;
  CHECK(set_metric(m, "generation-queue-duration", "0.125"));
  CHECK(set_metric(m, "prompt-tokens", "12"));
  CHECK(set_metric(m, "server-processing-time", "fast"));
  CHECK_FALSE(set_metric(m, "x-other", "1"));
  CHECK(m.generation_queue_duration == 0.125);
  CHECK(m.prompt_tokens == 12);
  CHECK(m.server_processing_time < 0);
}

TEST_CASE("malformed responses raise bad_response naming the problem") {
  Prompt prompt;
  SamplingParams p;
  auto code_of = [&](const std::string& body) {
    try {
      parse_completion(body, prompt, p, nullptr);
    } catch (const flare::Error& e) {
      CHECK(e.retryable == (std::string(e.what()).find("raw_output") == std::string::npos));
      return std::string(e.code) + ": " + e.what();
    }
    return std::string("no error");
  };
  CHECK(code_of(R"({"choices":[{"text":"x")").find("not valid JSON") != std::string::npos);
  CHECK(code_of(R"({"choices":[]})").find("non-empty list") != std::string::npos);
  CHECK(code_of(R"({"choices":[{"finish_reason":"stop"}]})").find("choices[0].text") !=
        std::string::npos);
  CHECK(code_of(R"({"choices":[{"text":"x"}],"usage":{"completion_tokens":"two"}})")
            .find("raw_output.completion_token_ids") != std::string::npos);
  // A NUL byte ends nothing: the text after it is part of the body, which is then not JSON.
  p.logprobs = true;
  const std::string nul_body = std::string(R"({"choices":[{"text":"x","logprobs":{"content":[]}}]})") +
                               '\0' + "garbage";
  CHECK(code_of(nul_body).find("not valid JSON") != std::string::npos);
  CHECK(code_of(R"({"choices":[{"text":"x"}]})").find("logprobs") != std::string::npos);
}
