// The OpenAI-compatible surface under /inference/v1 beside the completions
// route: chat completions (flare's chat template, host/text/chat_template.hpp),
// the models list, and batches of prompts for completions. Each of them runs
// single-prompt completions through complete_one and rewrites the answer into
// OpenAI's shape: the JSON body, or each SSE event of a stream.
#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "emulator/server/api_error.hpp"
#include "emulator/server/openai_compat.hpp"
#include "text/chat_template.hpp"

namespace flare::emulator {
namespace {

using json = nlohmann::json;
namespace chat = text::chat;

constexpr size_t kMaxBatchPrompts = 256;
constexpr size_t kBatchThreads = 16;

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// ---- streams: the events of inner completion streams, rewritten -----------

// Rewrites the JSON payload of one SSE event; returns false to drop it.
using EventRewrite = std::function<bool(json& event)>;

// Splits what an inner stream writes into events and writes each one,
// rewritten, to the client. "[DONE]" passes only when keep_done is set.
struct EventRelay {
  explicit EventRelay(EventRewrite rw, bool keep_done_ = true)
      : rewrite(std::move(rw)), keep_done(keep_done_) {}
  EventRewrite rewrite;
  bool keep_done;
  std::string pending;

  bool feed(const char* data, size_t n, httplib::DataSink& out) {
    pending.append(data, n);
    size_t end;
    while ((end = pending.find("\n\n")) != std::string::npos) {
      std::string event = pending.substr(0, end);
      pending.erase(0, end + 2);
      std::string payload = event.starts_with("data: ") ? event.substr(6) : event;
      std::string text;
      if (payload == "[DONE]") {
        if (!keep_done) continue;
        text = "data: [DONE]\n\n";
      } else {
        json j = json::parse(payload, nullptr, false);
        if (j.is_discarded() || j.contains("error")) {
          text = event + "\n\n";  // an error event passes as it is
        } else {
          if (!rewrite(j)) continue;
          text = "data: " + dump(j) + "\n\n";
        }
      }
      if (!out.write(text.data(), text.size())) return false;
    }
    return true;
  }
};

struct InnerStream {
  httplib::ContentProvider provider;
  httplib::ContentProviderResourceReleaser release;
  EventRelay relay;
};

// The inner streams, answered one after the other as one SSE stream. Each
// inner stream's resources are released once, when the answer ends (or when
// the request fails before it starts).
struct StreamChain {
  std::vector<InnerStream> streams;
  size_t current = 0;
  bool released = false;

  void add(httplib::Response& inner, EventRelay relay) {
    streams.push_back({std::move(inner.content_provider_),
                       std::move(inner.content_provider_resource_releaser_), std::move(relay)});
    inner.content_provider_ = nullptr;
    inner.content_provider_resource_releaser_ = nullptr;
  }
  void release(bool success) {
    if (released) return;
    released = true;
    for (auto& s : streams) {
      if (s.release) s.release(success);
    }
  }
  ~StreamChain() { release(false); }

  bool next(size_t offset, httplib::DataSink& sink) {
    while (current < streams.size()) {
      InnerStream& s = streams[current];
      bool done = false, failed = false;
      httplib::DataSink proxy;
      proxy.write = [&](const char* d, size_t n) {
        if (!s.relay.feed(d, n, sink)) failed = true;
        return !failed;
      };
      proxy.done = [&] { done = true; };
      proxy.is_writable = [&] { return !sink.is_writable || sink.is_writable(); };
      if (!s.provider(offset, 0, proxy) || failed) return false;
      if (!done) return true;  // called again for more
      ++current;
    }
    sink.done();
    return true;
  }
};

void answer_with_chain(httplib::Response& res, std::shared_ptr<StreamChain> chain) {
  res.headers.erase("Content-Type");  // set again below, once
  res.headers.erase("Cache-Control");
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [chain](size_t offset, httplib::DataSink& sink) { return chain->next(offset, sink); },
      [chain](bool success) { chain->release(success); });
}

// ---- chat completions -------------------------------------------------------

// A chat request as the completion request it runs: the messages through the
// chat template, the end of turn added to the stop strings.
json completion_of_chat(const json& body) {
  auto messages = body.find("messages");
  if (messages == body.end() || messages->is_null()) bad_request("field 'messages' is required");
  if (body.contains("prompt")) {
    bad_request("field 'prompt' is not a chat completions field; send 'messages'");
  }
  json c = body;
  c.erase("messages");
  c["prompt"] = chat::render(*messages, true);  // std::invalid_argument -> 400 naming the field
  if (auto m = body.find("max_completion_tokens"); m != body.end() && !m->is_null()) {
    c["max_tokens"] = *m;
    c.erase("max_completion_tokens");
  }
  if (auto lp = body.find("logprobs"); lp != body.end() && !lp->is_null() && !lp->is_boolean()) {
    bad_request(
        "field 'logprobs' must be a boolean in chat completions (top_logprobs gives "
        "the number of alternatives)");
  }
  if (get_int(body, "top_logprobs", 0) > 0 && !get_bool(body, "logprobs", false)) {
    bad_request("field 'top_logprobs' needs logprobs = true");
  }
  if (get_bool(body, "echo", false))
    bad_request("field 'echo' is not supported by chat completions");
  json stop = json::array();
  if (auto st = body.find("stop"); st != body.end() && !st->is_null()) {
    if (st->is_array()) {
      stop = *st;
    } else {
      stop.push_back(*st);  // a non-string is refused by the completion's checks
    }
  }
  stop.push_back(chat::kEndOfTurn);
  c["stop"] = std::move(stop);
  c.erase("stream_options");  // usage always comes in the last chunk
  return c;
}

json token_bytes(const json& entry) {
  int id = entry.value("token_id", -1);
  if (id >= 0 && id < 256) return json::array({id});
  return json::array();  // BOS / EOS: no bytes
}

// logprobs.content in the chat shape: {token, logprob, bytes, top_logprobs}
// (flare's token_id and sampling_logprob kept beside them).
json chat_logprobs(const json& lp) {
  if (!lp.is_object() || !lp.contains("content")) return nullptr;
  json content = json::array();
  for (const auto& t : lp["content"]) {
    json e = t;
    e["bytes"] = token_bytes(t);
    json top = json::array();
    for (const auto& alt : t.value("top_logprobs", json::array())) {
      json a = alt;
      a["bytes"] = token_bytes(alt);
      top.push_back(std::move(a));
    }
    e["top_logprobs"] = std::move(top);
    content.push_back(std::move(e));
  }
  return {{"content", std::move(content)}, {"refusal", nullptr}};
}

std::string chat_id(const json& completion) {
  std::string id = completion.value("id", std::string("cmpl-0"));
  return "chat" + id;  // cmpl-... -> chatcmpl-...
}

void chat_body(json& j) {
  json choices = json::array();
  for (auto& c : j["choices"]) {
    json out = {{"index", c["index"]},
                {"message", {{"role", "assistant"}, {"content", c.value("text", "")}}},
                {"logprobs", chat_logprobs(c.value("logprobs", json()))},
                {"finish_reason", c["finish_reason"]}};
    if (c.contains("raw_output")) out["raw_output"] = c["raw_output"];
    choices.push_back(std::move(out));
  }
  j["choices"] = std::move(choices);
  j["id"] = chat_id(j);
  j["object"] = "chat.completion";
}

// Chunks in the chat shape: each choice's first delta carries the role.
EventRewrite chat_chunks() {
  auto started = std::make_shared<std::set<long>>();
  return [started](json& j) {
    for (auto& c : j["choices"]) {
      long index = c.value("index", 0L);
      json delta = json::object();
      if (started->insert(index).second) delta["role"] = "assistant";
      std::string text = c.value("text", "");
      if (!text.empty() || delta.contains("role")) delta["content"] = text;
      json out = {{"index", index},
                  {"delta", std::move(delta)},
                  {"logprobs", chat_logprobs(c.value("logprobs", json()))},
                  {"finish_reason", c.value("finish_reason", json())}};
      if (c.contains("raw_output")) out["raw_output"] = c["raw_output"];
      c = std::move(out);
    }
    j["id"] = chat_id(j);
    j["object"] = "chat.completion.chunk";
    return true;
  };
}

void chat_completions(RouteEnv& env, const httplib::Request& req, httplib::Response& res) {
  json body = parse_body(req);
  json c = completion_of_chat(body);
  complete_one(env, c, res);
  if (get_bool(body, "stream", false)) {
    auto chain = std::make_shared<StreamChain>();
    chain->add(res, EventRelay{chat_chunks()});
    answer_with_chain(res, std::move(chain));
    return;
  }
  json j = json::parse(res.body);
  chat_body(j);
  res.body = dump(j);
}

// ---- the models list --------------------------------------------------------

json models_list(ControlPlane& cp, double started_at) {
  json data = json::array();
  for (const auto& name : model::builtin_names()) {
    data.push_back({{"id", "accounts/" + cp.account + "/models/" + name},
                    {"object", "model"},
                    {"created", static_cast<long>(started_at)},
                    {"owned_by", cp.account}});
  }
  std::lock_guard lock(cp.mu);
  for (const auto& [id, d] : cp.deployments) {
    if (d.row.state == "DELETING") continue;
    data.push_back({{"id", "accounts/" + cp.account + "/deployments/" + id},
                    {"object", "model"},
                    {"created", static_cast<long>(d.row.create_time)},
                    {"owned_by", cp.account},
                    {"root", d.base_model()}});
  }
  return {{"object", "list"}, {"data", std::move(data)}};
}

}  // namespace

// ---- batches of prompts for completions -----------------------------------

bool is_prompt_batch(const json& body) {
  auto it = body.find("prompt");
  return it != body.end() && it->is_array() && !it->empty() &&
         ((*it)[0].is_string() || (*it)[0].is_array());
}

void complete_batch(RouteEnv& env, const json& body, httplib::Response& res) {
  const json& prompts = body["prompt"];
  if (prompts.size() > kMaxBatchPrompts) {
    bad_request("field 'prompt' holds " + std::to_string(prompts.size()) +
                " prompts; a batch takes at most " + std::to_string(kMaxBatchPrompts));
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (!prompts[i].is_string() && !prompts[i].is_array()) {
      bad_request("prompt[" + std::to_string(i) +
                  "] must be a string or a list of token ids, as the batch's first prompt");
    }
  }
  const long n = get_int(body, "n", 1);
  auto at = [&](size_t i) {
    json one = body;
    one["prompt"] = prompts[i];
    return one;
  };
  // Choice j of prompt i becomes choice i * n + j.
  auto reindex = [n](json& choices, size_t i) {
    for (auto& c : choices) c["index"] = static_cast<long>(i) * n + c.value("index", 0L);
  };
  if (get_bool(body, "stream", false)) {
    auto chain = std::make_shared<StreamChain>();
    auto id = std::make_shared<std::string>();  // the first prompt's, for every chunk
    for (size_t i = 0; i < prompts.size(); ++i) {
      httplib::Response one;
      complete_one(env, at(i), one);
      if (i == 0) res.headers = one.headers;
      chain->add(one, EventRelay{[reindex, i, id](json& j) {
                                   reindex(j["choices"], i);
                                   if (id->empty()) *id = j.value("id", "");
                                   j["id"] = *id;
                                   return true;
                                 },
                                 i + 1 == prompts.size()});
    }
    answer_with_chain(res, std::move(chain));
    return;
  }
  // The prompts run at once on a few threads (the engine batches them); the
  // first failure is the answer.
  std::vector<httplib::Response> answers(prompts.size());
  std::atomic<size_t> next{0};
  std::mutex failure_mu;
  std::exception_ptr failure;
  auto worker = [&] {
    for (size_t i; (i = next++) < prompts.size();) {
      try {
        complete_one(env, at(i), answers[i]);
      } catch (...) {
        std::lock_guard lock(failure_mu);
        if (!failure) failure = std::current_exception();
      }
    }
  };
  std::vector<std::thread> threads;
  for (size_t t = 1; t < std::min(prompts.size(), kBatchThreads); ++t) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
  if (failure) std::rethrow_exception(failure);
  json merged = json::parse(answers[0].body);
  json choices = json::array();
  long prompt_tokens = 0, completion_tokens = 0;
  for (size_t i = 0; i < answers.size(); ++i) {
    json j = i == 0 ? merged : json::parse(answers[i].body);
    reindex(j["choices"], i);
    for (auto& c : j["choices"]) choices.push_back(std::move(c));
    prompt_tokens += j["usage"].value("prompt_tokens", 0L);
    completion_tokens += j["usage"].value("completion_tokens", 0L);
  }
  merged["choices"] = std::move(choices);
  merged["usage"] = {{"prompt_tokens", prompt_tokens},
                     {"completion_tokens", completion_tokens},
                     {"total_tokens", prompt_tokens + completion_tokens}};
  res.headers = answers[0].headers;
  for (const char* h : {"fireworks-prompt-tokens", "prompt-tokens"}) {
    if (res.has_header(h)) {
      res.headers.erase(h);
      res.set_header(h, std::to_string(prompt_tokens));
    }
  }
  res.headers.erase("Content-Type");
  res.set_content(dump(merged), "application/json");
}

void add_openai_routes(Router& r, RouteEnv& env) {
  r.post(
      "/inference/v1/chat/completions", Auth::Bearer,
      [&env](const httplib::Request& req, httplib::Response& res) {
        chat_completions(env, req, res);
      },
      BodyLimit::Sampling);
  double started_at = now_s();
  r.get("/inference/v1/models", Auth::Bearer,
        [&env, started_at](const httplib::Request&, httplib::Response& res) {
          send_json(res, 200, models_list(env.cp, started_at));
        });
  r.get("/inference/v1/models/(.+)", Auth::Bearer,
        [&env, started_at](const httplib::Request& req, httplib::Response& res) {
          std::string id = req.matches[1];
          json list = models_list(env.cp, started_at);
          for (auto& m : list["data"]) {
            if (m["id"] == id) return send_json(res, 200, m);
          }
          not_found("model '" + id + "' not found (GET /inference/v1/models lists them)");
        });
}

}  // namespace flare::emulator
