// /inference/v1/completions: shapes, auth, seeds, streaming, replicas, concurrency.
#include <doctest/doctest.h>

#include <thread>

#include "fixture.hpp"

using flare::test::http;
using flare::test::Reply;
using flare::test::Server;

namespace {
const std::string kModel = "accounts/local/deployments/serve";

std::vector<nlohmann::json> sse_events(const std::string& body) {
  std::vector<nlohmann::json> out;
  size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    size_t end = body.find("\n\n", pos);
    std::string data = body.substr(pos + 6, end - pos - 6);
    if (data != "[DONE]") out.push_back(nlohmann::json::parse(data));
    pos = end;
  }
  return out;
}
}  // namespace

TEST_CASE("completions answer in the protocol's shape") {
  Server s;
  s.create_ready("serve", {{"minReplicaCount", 1}});
  Reply r = s.complete({{"model", kModel},
                        {"prompt", "hello"},
                        {"max_tokens", 6},
                        {"temperature", 1.0},
                        {"seed", 3},
                        {"logprobs", true},
                        {"top_logprobs", 2},
                        {"raw_output", true}});
  REQUIRE_MESSAGE(r.status == 200, r.body);
  auto j = r.json();
  CHECK(j["model"] == "accounts/local/models/tiny-gpt@accounts/local/models/tiny-gpt");
  CHECK(r.header("fireworks-snapshot-identity") == "accounts/local/models/tiny-gpt");
  CHECK(!r.header("fireworks-server-processing-time").empty());
  REQUIRE(j["choices"].size() == 1);
  auto& c = j["choices"][0];
  std::string reason = c["finish_reason"];
  CHECK((reason == "length" || reason == "stop"));
  auto ids = c["raw_output"]["completion_token_ids"];
  CHECK(c["raw_output"]["prompt_token_ids"] == nlohmann::json({104, 101, 108, 108, 111}));
  auto content = c["logprobs"]["content"];
  REQUIRE(content.size() == ids.size());
  for (size_t k = 0; k < content.size(); ++k) {
    CHECK(content[k]["token_id"] == ids[k]);
    CHECK(content[k]["logprob"].get<double>() <= 0);
    CHECK(content[k]["sampling_logprob"].get<double>() <= 0);
    CHECK(content[k]["top_logprobs"].size() == 2);
  }
  CHECK(j["usage"]["prompt_tokens"] == 5);
  CHECK(j["usage"]["completion_tokens"] == ids.size());
  CHECK(j["usage"]["total_tokens"] == 5 + ids.size());

  // Auth: bearer only.
  CHECK(http("POST", s.url("/inference/v1/completions"), "{}", {s.key_header()}).status == 401);
  CHECK(http("POST", s.url("/inference/v1/completions"), "{}").status == 401);
  // Errors name the field.
  Reply bad = s.complete({{"model", kModel}, {"prompt", "x"}, {"top_p", 0}});
  CHECK(bad.status == 400);
  CHECK(bad.json()["error"]["message"].get<std::string>().find("top_p") != std::string::npos);
  CHECK(s.complete({{"model", kModel}, {"prompt", {1, 999}}}).status == 400);
  CHECK(s.complete({{"model", kModel}}).status == 400);
  CHECK(s.complete({{"model", "accounts/local/deployments/none"}, {"prompt", "x"}}).status == 404);
  CHECK(s.complete({{"model", "accounts/local/models/tiny-gpt"}, {"prompt", "x"}}).status == 404);
}

TEST_CASE("the same seed gives the same output, echo covers the prompt") {
  Server s;
  s.create_ready("serve");
  nlohmann::json req = {{"model", kModel},    {"prompt", {1, 2, 3}}, {"max_tokens", 12},
                        {"seed", 42},         {"temperature", 1.0},  {"n", 3},
                        {"raw_output", true}, {"logprobs", true}};
  auto a = s.complete(req).json();
  auto b = s.complete(req).json();
  for (int i = 0; i < 3; ++i) {
    CHECK(a["choices"][i]["raw_output"]["completion_token_ids"] ==
          b["choices"][i]["raw_output"]["completion_token_ids"]);
    CHECK(a["choices"][i]["logprobs"] == b["choices"][i]["logprobs"]);
  }
  req["echo"] = true;
  req["n"] = 1;
  auto e = s.complete(req).json();
  auto content = e["choices"][0]["logprobs"]["content"];
  // As the Fireworks API answers echo (and the SDK checks): completion_token_ids
  // hold prompt + completion, and the logprobs cover every one of them.
  auto ids = e["choices"][0]["raw_output"]["completion_token_ids"];
  REQUIRE(ids.size() == 3 + 12);
  CHECK(ids[0] == 1);
  CHECK(ids[2] == 3);
  REQUIRE(content.size() == ids.size());
  CHECK(content[0]["token_id"] == 1);
  CHECK(content[2]["token_id"] == 3);
  // Streamed, the echo comes first and the events add up to the same answer.
  req["stream"] = true;
  Reply st = s.complete(req);
  REQUIRE(st.status == 200);
  nlohmann::json streamed = nlohmann::json::array();
  std::string text;
  nlohmann::json last_ids;
  for (auto& ev : sse_events(st.body)) {
    auto& c = ev["choices"][0];
    text += c["text"].get<std::string>();
    if (c.contains("logprobs"))
      for (auto& x : c["logprobs"]["content"]) streamed.push_back(x);
    if (c.contains("raw_output")) last_ids = c["raw_output"]["completion_token_ids"];
  }
  CHECK(streamed == content);
  CHECK(last_ids == ids);
  CHECK(text == e["choices"][0]["text"]);

  // Greedy stops at a stop string and reports "stop" or runs to length.
  auto g = s.complete({{"model", kModel}, {"prompt", "ab"}, {"max_tokens", 5}, {"temperature", 0}})
               .json();
  auto g2 = s.complete({{"model", kModel}, {"prompt", "ab"}, {"max_tokens", 5}, {"temperature", 0}})
                .json();
  CHECK(g["choices"][0]["text"] == g2["choices"][0]["text"]);
}

TEST_CASE("stream=true sends SSE events naming the snapshot") {
  Server s;
  s.create_ready("serve");
  Reply r = s.complete({{"model", kModel},
                        {"prompt", "hi"},
                        {"max_tokens", 5},
                        {"seed", 9},
                        {"stream", true},
                        {"logprobs", true},
                        {"raw_output", true}});
  REQUIRE(r.status == 200);
  CHECK(r.header("content-type").find("text/event-stream") != std::string::npos);
  CHECK(r.body.find("data: [DONE]") != std::string::npos);
  auto events = sse_events(r.body);
  REQUIRE(events.size() >= 2);
  std::string text;
  for (auto& e : events) {
    CHECK(e["model"] == "accounts/local/models/tiny-gpt@accounts/local/models/tiny-gpt");
    text += e["choices"][0]["text"].get<std::string>();
  }
  auto last = events.back();
  CHECK(!last["choices"][0]["finish_reason"].is_null());
  CHECK(last["usage"]["completion_tokens"].get<int>() == static_cast<int>(events.size()) - 1);
  auto plain =
      s.complete({{"model", kModel}, {"prompt", "hi"}, {"max_tokens", 5}, {"seed", 9}}).json();
  CHECK(text == plain["choices"][0]["text"]);
}

// The headers the SDK's ServerMetrics.from_headers reads, and perf_metrics in
// the last chunk of a stream when perf_metrics_in_response is set (as the
// SDK's async_completions_stream asks): measured by the engine, not fixed.
TEST_CASE("server metrics: the SDK's headers, and perf_metrics in the last SSE chunk") {
  Server s;
  s.create_ready("serve", {{"minReplicaCount", 1}});
  nlohmann::json req = {{"model", kModel}, {"prompt", "hello"}, {"max_tokens", 8}, {"seed", 1}};
  Reply r = s.complete(req);
  REQUIRE(r.status == 200);
  const char* names[] = {"num-concurrent-requests",   "prefill-queue-duration",
                         "generation-queue-duration", "server-time-to-first-token",
                         "cached-prompt-tokens",      "prompt-tokens",
                         "server-processing-time"};
  for (const char* n : names) CHECK_MESSAGE(!r.header(n).empty(), n);
  CHECK(r.header("prompt-tokens") == "5");
  CHECK(std::stoi(r.header("num-concurrent-requests")) >= 1);
  double ttft = std::stod(r.header("server-time-to-first-token"));
  double total = std::stod(r.header("server-processing-time"));
  CHECK(ttft > 0);
  CHECK(ttft <= total);
  CHECK(std::stod(r.header("prefill-queue-duration")) >= 0);
  CHECK(std::stod(r.header("prefill-queue-duration")) <= ttft);

  // Under load (64 requests at once on a 2-thread engine) requests wait for a
  // worker: the queue the measurements report grows.
  double max_pq = 0;
  int max_concurrent = 0;
  std::vector<Reply> got(64);
  std::vector<std::thread> threads;
  nlohmann::json heavy = {{"model", kModel}, {"prompt", std::string(150, 'x')}, {"max_tokens", 64}};
  for (int i = 0; i < 64; ++i) threads.emplace_back([&, i] { got[i] = s.complete(heavy); });
  for (auto& t : threads) t.join();
  for (auto& g : got) {
    REQUIRE_MESSAGE(g.status == 200, g.body);
    max_pq = std::max(max_pq, std::stod(g.header("prefill-queue-duration")));
    max_concurrent = std::max(max_concurrent, std::stoi(g.header("num-concurrent-requests")));
  }
  CHECK(max_concurrent > 1);
  CHECK(max_pq > std::stod(r.header("prefill-queue-duration")));

  req["stream"] = true;
  req["perf_metrics_in_response"] = true;
  Reply st = s.complete(req);
  REQUIRE(st.status == 200);
  CHECK(st.header("prompt-tokens") == "5");
  auto events = sse_events(st.body);
  REQUIRE(events.size() >= 2);
  for (size_t i = 0; i + 1 < events.size(); ++i) CHECK_FALSE(events[i].contains("perf_metrics"));
  auto pm = events.back()["perf_metrics"];
  for (const char* n : names) CHECK_MESSAGE(pm.contains(n), n);
  CHECK(std::stod(pm["server-time-to-first-token"].get<std::string>()) > 0);
  req.erase("perf_metrics_in_response");
  CHECK_FALSE(sse_events(s.complete(req).body).back().contains("perf_metrics"));
}

TEST_CASE("replica counts: scaled to zero, scaling up from idle, CREATING") {
  Server s(0.3, "", "", /*idle_timeout_s=*/0.2);
  REQUIRE(s.create_deployment("serve", {{"minReplicaCount", 0}, {"maxReplicaCount", 1}}).status ==
          200);
  Reply creating = s.complete({{"model", kModel}, {"prompt", "x"}, {"max_tokens", 1}});
  CHECK(creating.status == 425);
  s.wait_state("serve", "READY");
  CHECK(s.complete({{"model", kModel}, {"prompt", "x"}, {"max_tokens", 1}}).status == 200);

  // Idle past the timeout: the replica goes away, the next request starts it.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  CHECK(s.hotload_status("serve").json()["replicas"].empty());
  Reply cold = s.complete({{"model", kModel}, {"prompt", "x"}, {"max_tokens", 1}});
  CHECK(cold.status == 503);
  CHECK(cold.body.find("DEPLOYMENT_SCALING_UP") != std::string::npos);
  CHECK(!cold.header("retry-after").empty());
  Reply warm;
  for (int i = 0; i < 300; ++i) {
    warm = s.complete({{"model", kModel}, {"prompt", "x"}, {"max_tokens", 1}});
    if (warm.status == 200) break;
    CHECK(warm.status == 503);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(warm.status == 200);

  // scale_to_zero is a PATCH of both counts to 0.
  Reply z = s.control("PATCH", "/v1/accounts/local/deployments/serve",
                      {{"minReplicaCount", 0}, {"maxReplicaCount", 0}});
  REQUIRE(z.status == 200);
  Reply zero = s.complete({{"model", kModel}, {"prompt", "x"}, {"max_tokens", 1}});
  CHECK(zero.status == 503);
  std::string msg = zero.json()["error"]["message"];
  CHECK(msg.find("accounts/local/deployments/serve") != std::string::npos);
  CHECK(msg.find("scaled to zero") != std::string::npos);
}

TEST_CASE("64 simultaneous requests are all answered correctly") {
  Server s;
  s.create_ready("serve", {{"minReplicaCount", 1}});
  // Reference answers, one request at a time.
  std::vector<nlohmann::json> want(64);
  auto body = [](int i) {
    return nlohmann::json{
        {"model", kModel},    {"prompt", std::string(1, static_cast<char>('a' + i % 8)) + "p"},
        {"max_tokens", 8},    {"seed", i},
        {"temperature", 0.9}, {"raw_output", true}};
  };
  for (int i = 0; i < 64; ++i) {
    Reply r = s.complete(body(i));
    REQUIRE(r.status == 200);
    want[i] = r.json()["choices"][0]["raw_output"]["completion_token_ids"];
  }
  std::vector<Reply> got(64);
  std::vector<std::thread> threads;
  for (int i = 0; i < 64; ++i) threads.emplace_back([&, i] { got[i] = s.complete(body(i)); });
  for (auto& t : threads) t.join();
  for (int i = 0; i < 64; ++i) {
    REQUIRE_MESSAGE(got[i].status == 200, got[i].body);
    CHECK(got[i].json()["choices"][0]["raw_output"]["completion_token_ids"] == want[i]);
  }
}
