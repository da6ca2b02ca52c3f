// The OpenAI-compatible surface under /inference/v1: batches of prompts x n
// (choice index = prompt_index * n + j, as OpenAI numbers them), chat
// completions through flare's chat template, the models list, and error bodies
// with OpenAI's fields. tests/interop/openai_client.mjs runs OpenAI's own
// client against the same routes.
#include <doctest/doctest.h>

#include <map>
#include <set>

#include "fixture.hpp"
#include "text/chat_template.hpp"

using flare::test::http;
using flare::test::Reply;
using flare::test::Server;
using json = nlohmann::json;

namespace {
const std::string kModel = "accounts/local/deployments/oa";

Reply post(Server& s, const std::string& path, const json& body) {
  return http("POST", s.url(path), body.dump(), {s.bearer_header()});
}

std::vector<json> sse_events(const std::string& body, int* done = nullptr) {
  std::vector<json> out;
  size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    size_t end = body.find("\n\n", pos);
    std::string data = body.substr(pos + 6, end - pos - 6);
    if (data == "[DONE]") {
      if (done) ++*done;
    } else {
      out.push_back(json::parse(data));
    }
    pos = end;
  }
  return out;
}

void check_error_shape(const Reply& r, long status, const std::string& param) {
  CHECK(r.status == status);
  json e = r.json()["error"];
  CHECK(e["message"].is_string());
  CHECK(e["code"].is_string());
  CHECK(e["type"] == (status == 401 ? "authentication_error" : "invalid_request_error"));
  if (param.empty()) {
    CHECK(e["param"].is_null());
  } else {
    CHECK(e["param"] == param);
  }
}
}  // namespace

TEST_CASE("a batch of prompts x n: OpenAI's choice order, each prompt as it runs alone") {
  Server s;
  s.create_ready("oa", {{"minReplicaCount", 1}});
  json base = {{"model", kModel}, {"max_tokens", 5}, {"seed", 9}, {"n", 2}, {"raw_output", true}};
  std::vector<json> prompts = {"ab", json::array({104, 105}), "xyz"};
  std::vector<json> alone;
  for (const auto& p : prompts) {
    json one = base;
    one["prompt"] = p;
    Reply r = post(s, "/inference/v1/completions", one);
    REQUIRE_MESSAGE(r.status == 200, r.body);
    alone.push_back(r.json());
  }
  // A list of strings and a list of token-id lists batch alike.
  for (auto batch : {json::array({"ab", "hi", "xyz"}),
                     json::array({json::array({97, 98}), json::array({104, 105}),
                                  json::array({120, 121, 122})})}) {
    json req = base;
    req["prompt"] = batch;
    Reply r = post(s, "/inference/v1/completions", req);
    REQUIRE_MESSAGE(r.status == 200, r.body);
    json j = r.json();
    REQUIRE(j["choices"].size() == 6);
    for (size_t k = 0; k < 6; ++k) {
      const json& c = j["choices"][k];
      CHECK(c["index"] == k);
      const json& want = alone[k / 2]["choices"][k % 2];
      CHECK(c["raw_output"]["completion_token_ids"] == want["raw_output"]["completion_token_ids"]);
      CHECK(c["text"] == want["text"]);
    }
    CHECK(j["usage"]["prompt_tokens"] == 2 + 2 + 3);
    CHECK(r.header("fireworks-prompt-tokens") == "7");
  }
  // Streamed: every chunk with its OpenAI index, one id, one [DONE] at the end.
  json req = base;
  req["prompt"] = json::array({"ab", "hi", "xyz"});
  req["stream"] = true;
  Reply r = post(s, "/inference/v1/completions", req);
  REQUIRE(r.status == 200);
  CHECK(r.header("content-type") == "text/event-stream");
  int done = 0;
  auto events = sse_events(r.body, &done);
  CHECK(done == 1);
  CHECK(r.body.ends_with("data: [DONE]\n\n"));
  std::map<long, std::string> text;
  std::set<std::string> ids;
  for (const auto& e : events) {
    ids.insert(e["id"].get<std::string>());
    for (const auto& c : e["choices"]) text[c["index"].get<long>()] += c["text"].get<std::string>();
  }
  CHECK(ids.size() == 1);
  REQUIRE(text.size() == 6);
  for (long k = 0; k < 6; ++k) CHECK(text[k] == alone[k / 2]["choices"][k % 2]["text"]);
  // A bad element is refused naming it; nothing runs.
  req = base;
  req["prompt"] = json::array({"ab", 7});
  check_error_shape(post(s, "/inference/v1/completions", req), 400, "");
  req["prompt"] = json::array({"ab", json::array({1, 999})});
  CHECK(post(s, "/inference/v1/completions", req).status == 400);
  req["prompt"] = json(std::vector<std::string>(257, "a"));
  Reply big = post(s, "/inference/v1/completions", req);
  check_error_shape(big, 400, "prompt");
  CHECK(big.json()["error"]["message"].get<std::string>().find("at most 256") != std::string::npos);
}

TEST_CASE("chat completions run the chat template's prompt and stop at the end of turn") {
  Server s;
  s.create_ready("oa", {{"minReplicaCount", 1}});
  json messages = json::array(
      {{{"role", "system"}, {"content", "be brief"}}, {{"role", "user"}, {"content", "2+2="}}});
  json chat = {
      {"model", kModel}, {"messages", messages}, {"max_tokens", 24},  {"seed", 4},
      {"n", 3},          {"logprobs", true},     {"top_logprobs", 2}, {"raw_output", true}};
  Reply r = post(s, "/inference/v1/chat/completions", chat);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  json j = r.json();
  CHECK(j["object"] == "chat.completion");
  CHECK(j["id"].get<std::string>().starts_with("chatcmpl-"));
  json same = {{"model", kModel},
               {"prompt", flare::text::chat::render(messages, true)},
               {"max_tokens", 24},
               {"seed", 4},
               {"n", 3},
               {"stop", json::array({"<|end|>"})},
               {"raw_output", true}};
  json plain = post(s, "/inference/v1/completions", same).json();
  CHECK(j["usage"] == plain["usage"]);
  REQUIRE(j["choices"].size() == 3);
  for (size_t k = 0; k < 3; ++k) {
    const json& c = j["choices"][k];
    CHECK(c["index"] == k);
    CHECK(c["message"]["role"] == "assistant");
    CHECK(c["message"]["content"] == plain["choices"][k]["text"]);
    CHECK(c["finish_reason"] == plain["choices"][k]["finish_reason"]);
    const json& ids = c["raw_output"]["completion_token_ids"];
    const json& content = c["logprobs"]["content"];
    REQUIRE(content.size() == ids.size());
    for (size_t t = 0; t < content.size(); ++t) {
      int id = ids[t];
      CHECK(content[t]["token_id"] == id);
      CHECK(content[t]["bytes"] == (id < 256 ? json::array({id}) : json::array()));
      CHECK(content[t]["top_logprobs"].size() == 2);
      CHECK(content[t]["top_logprobs"][0]["bytes"].is_array());
    }
  }
  // Streamed: the role first, then content deltas that add up to the message.
  chat["stream"] = true;
  chat.erase("raw_output");
  Reply st = post(s, "/inference/v1/chat/completions", chat);
  REQUIRE(st.status == 200);
  CHECK(st.header("content-type") == "text/event-stream");
  int done = 0;
  std::map<long, std::string> text;
  std::map<long, std::string> finish;
  std::map<long, int> roles;
  for (const auto& e : sse_events(st.body, &done)) {
    CHECK(e["object"] == "chat.completion.chunk");
    for (const auto& c : e["choices"]) {
      long i = c["index"];
      if (c["delta"].contains("role")) {
        CHECK(text[i].empty());
        ++roles[i];
      }
      text[i] += c["delta"].value("content", "");
      if (!c["finish_reason"].is_null()) finish[i] = c["finish_reason"];
    }
  }
  CHECK(done == 1);
  for (long i = 0; i < 3; ++i) {
    CHECK(roles[i] == 1);
    CHECK(text[i] == j["choices"][i]["message"]["content"]);
    CHECK(finish[i] == j["choices"][i]["finish_reason"]);
  }
}

TEST_CASE("chat requests are checked field by field") {
  Server s;
  s.create_ready("oa", {{"minReplicaCount", 1}});
  auto chat = [&](json extra) {
    json body = {{"model", kModel},
                 {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}};
    body.update(extra);
    return post(s, "/inference/v1/chat/completions", body);
  };
  check_error_shape(chat({{"messages", json::array({{{"role", "bot"}, {"content", "x"}}})}}), 400,
                    "messages[0].role");
  check_error_shape(chat({{"messages", json::array()}}), 400, "messages");
  check_error_shape(chat({{"messages", nullptr}}), 400, "messages");
  check_error_shape(
      chat({{"messages", json::array({{{"role", "user"},
                                       {"content", json::array({{{"type", "image_url"}}})}}})}}),
      400, "messages[0].content[0].type");
  check_error_shape(chat({{"logprobs", 3}}), 400, "logprobs");
  check_error_shape(chat({{"top_logprobs", 2}}), 400, "top_logprobs");
  check_error_shape(chat({{"echo", true}}), 400, "echo");
  check_error_shape(chat({{"prompt", "x"}}), 400, "prompt");
  check_error_shape(chat({{"model", "accounts/local/deployments/none"}}), 404, "");
  check_error_shape(chat({{"model", "gpt-4o"}}), 404, "");
  // The text-parts form is the same prompt as the string.
  json parts = json::array({{{"role", "user"},
                             {"content", json::array({{{"type", "text"}, {"text", "h"}},
                                                      {{"type", "text"}, {"text", "i"}}})}}});
  Reply a = chat({{"messages", parts}, {"seed", 1}, {"max_tokens", 6}});
  Reply b = chat({{"seed", 1}, {"max_tokens", 6}});
  REQUIRE(a.status == 200);
  CHECK(a.json()["choices"] == b.json()["choices"]);
  // max_completion_tokens is OpenAI's newer name for max_tokens.
  Reply m = chat({{"max_completion_tokens", 2}, {"stop", "zzz"}});
  REQUIRE_MESSAGE(m.status == 200, m.body);
  CHECK(m.json()["usage"]["completion_tokens"].get<int>() <= 2);
  check_error_shape(http("POST", s.url("/inference/v1/chat/completions"), "{}"), 401, "");
}

TEST_CASE("the models list: built-in base models and every deployment, in OpenAI's shape") {
  Server s;
  s.create_ready("oa");
  Reply r = http("GET", s.url("/inference/v1/models"), "", {s.bearer_header()});
  REQUIRE(r.status == 200);
  json j = r.json();
  CHECK(j["object"] == "list");
  std::set<std::string> ids;
  for (const auto& m : j["data"]) {
    ids.insert(m["id"].get<std::string>());
    CHECK(m["object"] == "model");
    CHECK(m["owned_by"] == "local");
    CHECK(m["created"].is_number_integer());
  }
  CHECK(ids.count("accounts/local/models/tiny-gpt") == 1);
  CHECK(ids.count("accounts/local/models/tiny-gpt-m") == 1);
  CHECK(ids.count(kModel) == 1);
  Reply one = http("GET", s.url("/inference/v1/models/" + kModel), "", {s.bearer_header()});
  REQUIRE(one.status == 200);
  CHECK(one.json()["root"] == "accounts/local/models/tiny-gpt");
  check_error_shape(http("GET", s.url("/inference/v1/models/accounts/local/deployments/x"), "",
                         {s.bearer_header()}),
                    404, "");
  // A deployment being deleted is no longer listed.
  CHECK(
      s.control("DELETE", "/v1/accounts/local/deployments/oa?ignoreChecks=true&hard=true").status ==
      200);
  json after = http("GET", s.url("/inference/v1/models"), "", {s.bearer_header()}).json();
  for (const auto& m : after["data"]) CHECK(m["id"] != kModel);
}
