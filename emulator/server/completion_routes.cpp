#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <random>

#include "emulator/engine/validate.hpp"
#include "emulator/server/api_error.hpp"
#include "emulator/server/routes.hpp"

namespace flare::emulator {
namespace {

struct Parsed {
  std::string deployment_id;
  std::vector<int> prompt;
  engine::SamplingParams params;
  bool raw_output = false;
  bool stream = false;
};

std::string deployment_of_model(const ControlPlane& cp, const std::string& model) {
  // "accounts/<a>/deployments/<id>", optionally after "<base model>#".
  std::string m = model.substr(model.find('#') == std::string::npos ? 0 : model.find('#') + 1);
  std::string prefix = "accounts/" + cp.account + "/deployments/";
  if (m.rfind(prefix, 0) != 0 || m.size() == prefix.size() ||
      m.find('/', prefix.size()) != std::string::npos) {
    not_found("model '" + model + "' is not a deployment of this server (expected '" + prefix +
              "<id>'); create a deployment and use its name");
  }
  return m.substr(prefix.size());
}

Parsed parse_request(const ControlPlane& cp, const nlohmann::json& body) {
  Parsed p;
  std::string model = get_string(body, "model", "");
  if (model.empty()) bad_request("field 'model' is required");
  p.deployment_id = deployment_of_model(cp, model);
  auto it = body.find("prompt");
  if (it == body.end() || it->is_null()) bad_request("field 'prompt' is required");
  if (it->is_string()) {
    p.prompt = model::encode_text(it->get<std::string>());
  } else if (it->is_array()) {
    for (size_t i = 0; i < it->size(); ++i) {
      const auto& v = (*it)[i];
      if (!v.is_number_integer() || v.get<long>() < 0 || v.get<long>() >= model::kVocab) {
        bad_request("prompt[" + std::to_string(i) + "] must be a token id in [0, " +
                    std::to_string(model::kVocab) + ")");
      }
      p.prompt.push_back(v.get<int>());
    }
  } else {
    bad_request("field 'prompt' must be a string or a list of token ids");
  }
  if (p.prompt.empty()) bad_request("field 'prompt' must not be empty");
  auto& sp = p.params;
  sp.n = get_int32(body, "n", 1);
  sp.max_tokens = get_int32(body, "max_tokens", 16);
  sp.temperature = get_number(body, "temperature", 1.0);
  sp.top_p = get_number(body, "top_p", 1.0);
  sp.top_k = get_int32(body, "top_k", 0);
  if (body.contains("seed") && !body["seed"].is_null()) {
    sp.seed = static_cast<uint64_t>(get_int(body, "seed", 0));
  }
  if (auto st = body.find("stop"); st != body.end() && !st->is_null()) {
    if (st->is_string()) {
      sp.stop.push_back(st->get<std::string>());
    } else if (st->is_array()) {
      for (const auto& s : *st) {
        if (!s.is_string()) bad_request("field 'stop' must be a string or a list of strings");
        sp.stop.push_back(s.get<std::string>());
      }
    } else {
      bad_request("field 'stop' must be a string or a list of strings");
    }
  }
  // logprobs is a boolean in the chat-style API and a count in the legacy one.
  if (auto lp = body.find("logprobs"); lp != body.end() && !lp->is_null()) {
    if (lp->is_boolean()) {
      sp.logprobs = lp->get<bool>();
    } else if (lp->is_number_integer()) {
      sp.logprobs = true;
      sp.top_logprobs = get_int32(body, "logprobs", 0);
    } else {
      bad_request("field 'logprobs' must be a boolean or an integer");
    }
  }
  if (body.contains("top_logprobs") && !body["top_logprobs"].is_null()) {
    sp.top_logprobs = get_int32(body, "top_logprobs", 0);
    if (sp.top_logprobs > 0) sp.logprobs = true;
  }
  sp.echo = get_bool(body, "echo", false);
  p.raw_output = get_bool(body, "raw_output", false);
  p.stream = get_bool(body, "stream", false);
  get_int(body, "prompt_cache_max_len", 0);  // type-checked; there is no prompt cache to bound
  return p;
}

nlohmann::json token_json(const engine::TokenLogprob& t) {
  nlohmann::json top = nlohmann::json::array();
  for (const auto& [id, lp] : t.top) {
    int tok = id;
    top.push_back({{"token_id", id}, {"token", model::decode_tokens({&tok, 1})}, {"logprob", lp}});
  }
  int tok = t.token;
  return {{"token_id", t.token},
          {"token", model::decode_tokens({&tok, 1})},
          {"logprob", t.logprob},
          {"sampling_logprob", t.sampling_logprob},
          {"top_logprobs", top}};
}

nlohmann::json choice_json(const Parsed& p, const engine::Result& r, size_t i) {
  const engine::Choice& c = r.choices[i];
  nlohmann::json j = {{"index", i}, {"finish_reason", c.finish_reason}};
  j["text"] = p.params.echo ? model::decode_tokens(r.prompt_tokens) + c.text : c.text;
  if (p.params.logprobs) {
    nlohmann::json content = nlohmann::json::array();
    if (p.params.echo) {
      for (const auto& t : c.prompt_logprobs) content.push_back(token_json(t));
    }
    for (const auto& t : c.logprobs) content.push_back(token_json(t));
    j["logprobs"] = {{"content", content}};
  } else {
    j["logprobs"] = nullptr;
  }
  if (p.raw_output) {
    j["raw_output"] = {{"prompt_token_ids", r.prompt_tokens}, {"completion_token_ids", c.tokens}};
  }
  return j;
}

std::string random_id() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = "cmpl-0000000000000000";
  std::uint64_t v = rng();
  for (int i = 20; i >= 5; --i, v >>= 4) id[static_cast<std::size_t>(i)] = kHex[v & 15];
  return id;
}

// --- the non-streaming response, written as text --------------------------------------
// The same bytes send_json would produce from the DOM (keys in sorted order,
// invalid UTF-8 replaced by U+FFFD), without building the DOM.

void append_int(std::string& out, long long v) {
  char buf[24];
  out.append(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
}

void append_json_text(std::string& out, const std::string& s) {
  bool plain = true;
  for (unsigned char c : s) {
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
      plain = false;
      break;
    }
  }
  if (plain) {
    out.push_back('"');
    out.append(s);
    out.push_back('"');
    return;
  }
  out += nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void append_ids(std::string& out, const std::vector<int>& ids) {
  out.push_back('[');
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i) out.push_back(',');
    append_int(out, ids[i]);
  }
  out.push_back(']');
}

void append_choice(std::string& out, const Parsed& p, const engine::Result& r, size_t i) {
  if (p.params.logprobs) {  // the rarer, larger answer: through the DOM
    out += choice_json(p, r, i).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return;
  }
  const engine::Choice& c = r.choices[i];
  out += "{\"finish_reason\":";
  append_json_text(out, c.finish_reason);
  out += ",\"index\":";
  append_int(out, static_cast<long long>(i));
  out += ",\"logprobs\":null";
  if (p.raw_output) {
    out += ",\"raw_output\":{\"completion_token_ids\":";
    append_ids(out, c.tokens);
    out += ",\"prompt_token_ids\":";
    append_ids(out, r.prompt_tokens);
    out.push_back('}');
  }
  out += ",\"text\":";
  append_json_text(out, p.params.echo ? model::decode_tokens(r.prompt_tokens) + c.text : c.text);
  out.push_back('}');
}

std::string completion_json(const Parsed& p, const engine::Result& r, const std::string& model) {
  std::string out;
  out.reserve(256 + r.choices.size() * 160);
  out += "{\"choices\":[";
  for (size_t i = 0; i < r.choices.size(); ++i) {
    if (i) out.push_back(',');
    append_choice(out, p, r, i);
  }
  out += "],\"created\":";
  append_int(out, static_cast<long long>(now_s()));
  out += ",\"id\":\"";
  out += random_id();
  out += "\",\"model\":";
  append_json_text(out, model);
  long long prompt = static_cast<long long>(r.prompt_tokens.size());
  out += ",\"object\":\"text_completion\",\"usage\":{\"completion_tokens\":";
  append_int(out, r.completion_tokens);
  out += ",\"prompt_tokens\":";
  append_int(out, prompt);
  out += ",\"total_tokens\":";
  append_int(out, prompt + r.completion_tokens);
  out += "}}";
  return out;
}

// Checks the replica can serve and marks one request in flight; throws the
// protocol's error otherwise.
std::shared_ptr<Serving> admit(ControlPlane& cp, const std::string& id, std::string* base_model) {
  std::lock_guard lock(cp.mu);
  auto it = cp.deployments.find(id);
  std::string name = "accounts/" + cp.account + "/deployments/" + id;
  if (it == cp.deployments.end() || it->second.row.state == "DELETING") {
    not_found("deployment " + name + " not found");
  }
  Deployment& d = it->second;
  if (d.row.state == "FAILED") {
    throw ApiError(400, "FAILED_PRECONDITION", "deployment " + name + " failed: " + d.row.message);
  }
  if (d.row.state == "CREATING") {
    throw ApiError(425, "DEPLOYMENT_NOT_READY", "deployment " + name + " is still CREATING",
                   cp.opt.provision_delay_s);
  }
  if (d.max_replicas() == 0) {
    throw ApiError(503, "DEPLOYMENT_SCALED_TO_ZERO",
                   "deployment " + name +
                       " is scaled to zero (maxReplicaCount is 0); raise "
                       "maxReplicaCount to serve requests");
  }
  Serving& s = *d.serving;
  if (s.phase != Phase::Up) {
    cp.request_scale_up(d);
    double wait = std::max(0.0, s.ready_at - now_s());
    throw ApiError(503, "DEPLOYMENT_SCALING_UP",
                   "DEPLOYMENT_SCALING_UP: deployment " + name +
                       " has no replica yet; one is starting, retry shortly",
                   std::max(wait, 1.0));
  }
  ++s.inflight;
  s.last_used = now_s();
  *base_model = d.base_model();
  return d.serving;
}

struct InflightGuard {
  ControlPlane& cp;
  std::shared_ptr<Serving> s;
  ~InflightGuard() {
    std::lock_guard lock(cp.mu);
    --s->inflight;
    s->last_used = now_s();
  }
};

void set_timing_headers(httplib::Response& res, const engine::Result& r, double seconds) {
  res.set_header("fireworks-snapshot-identity", r.snapshot_identity);
  char buf[48];  // "%f", as std::to_string(double) writes it, without printf
  auto end = std::to_chars(buf, buf + sizeof buf, seconds, std::chars_format::fixed, 6).ptr;
  res.set_header("fireworks-server-processing-time", std::string(buf, end));
  res.set_header("fireworks-prompt-tokens", std::to_string(r.prompt_tokens.size()));
  res.set_header("fireworks-cached-prompt-tokens", "0");
}

nlohmann::json usage_json(const engine::Result& r) {
  long prompt = static_cast<long>(r.prompt_tokens.size());
  return {{"prompt_tokens", prompt},
          {"completion_tokens", r.completion_tokens},
          {"total_tokens", prompt + r.completion_tokens}};
}

// Streaming: the engine runs on its own thread and its token callback queues
// SSE events that the connection thread writes out.
struct StreamState {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> events;
  bool done = false;
};

void stream_completion(ControlPlane& cp, std::shared_ptr<Serving> serving, Parsed p,
                       std::string base_model, httplib::Response& res) {
  bool truncate = take_truncate_fault();
  std::string snapshot = serving->engine->snapshot_identity();
  res.set_header("fireworks-snapshot-identity", snapshot);
  res.set_header("Cache-Control", "no-cache");
  auto st = std::make_shared<StreamState>();
  std::string id = random_id();
  long created = static_cast<long>(now_s());
  auto worker = std::make_shared<std::thread>([&cp, serving, p, st, id, created, base_model] {
    InflightGuard guard{cp, serving};
    auto event = [&](const nlohmann::json& j) {
      std::lock_guard lock(st->mu);
      st->events.push_back(
          "data: " + j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n\n");
      st->cv.notify_one();
    };
    try {
      std::string model_name;
      auto on_token = [&](int index, const engine::TokenLogprob& tok, const std::string& piece) {
        nlohmann::json choice = {{"index", index}, {"text", piece}, {"finish_reason", nullptr}};
        if (p.params.logprobs) choice["logprobs"] = {{"content", {token_json(tok)}}};
        if (p.raw_output) choice["raw_output"] = {{"completion_token_ids", {tok.token}}};
        event({{"id", id},
               {"object", "text_completion"},
               {"created", created},
               {"model", base_model + "@" + serving->engine->snapshot_identity()},
               {"choices", {choice}}});
      };
      engine::Result r = serving->engine->complete(p.prompt, p.params, on_token);
      nlohmann::json choices = nlohmann::json::array();
      for (size_t i = 0; i < r.choices.size(); ++i) {
        nlohmann::json c = {
            {"index", i}, {"text", ""}, {"finish_reason", r.choices[i].finish_reason}};
        if (p.raw_output) {
          c["raw_output"] = {{"prompt_token_ids", r.prompt_tokens},
                             {"completion_token_ids", r.choices[i].tokens}};
        }
        choices.push_back(c);
      }
      event({{"id", id},
             {"object", "text_completion"},
             {"created", created},
             {"model", base_model + "@" + r.snapshot_identity},
             {"choices", choices},
             {"usage", usage_json(r)}});
    } catch (const std::exception& e) {
      event({{"error", {{"code", "INTERNAL"}, {"message", e.what()}}}});
    }
    std::lock_guard lock(st->mu);
    st->events.push_back("data: [DONE]\n\n");
    st->done = true;
    st->cv.notify_one();
  });
  res.set_chunked_content_provider(
      "text/event-stream",
      [st, truncate, sent = 0](size_t, httplib::DataSink& sink) mutable {
        std::unique_lock lock(st->mu);
        st->cv.wait(lock, [&] { return !st->events.empty() || st->done; });
        while (!st->events.empty()) {
          std::string e = std::move(st->events.front());
          st->events.pop_front();
          if (!sink.write(e.data(), e.size())) return false;
          if (truncate && ++sent >= 1) return false;  // injected: cut the stream mid-way
        }
        if (st->done && st->events.empty()) sink.done();
        return true;
      },
      [worker](bool) { worker->join(); });
}

void complete(RouteEnv& env, const httplib::Request& req, httplib::Response& res) {
  auto t0 = std::chrono::steady_clock::now();
  Parsed p = parse_request(env.cp, parse_body(req));
  std::string base_model;
  auto serving = admit(env.cp, p.deployment_id, &base_model);
  try {
    engine::validate_request(p.prompt, p.params, *serving->cfg);
  } catch (...) {
    InflightGuard release{env.cp, serving};
    throw;
  }
  if (p.stream) {
    stream_completion(env.cp, serving, std::move(p), base_model, res);
    return;
  }
  InflightGuard guard{env.cp, serving};
  engine::Result r = serving->engine->complete(p.prompt, p.params);
  std::string out = completion_json(p, r, base_model + "@" + r.snapshot_identity);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  set_timing_headers(res, r, secs);
  res.status = 200;
  res.body = std::move(out);
  res.set_header("Content-Type", "application/json");
}

}  // namespace

void add_completion_routes(Router& r, RouteEnv& env) {
  r.post(
      "/inference/v1/completions", Auth::Bearer,
      [&env](const httplib::Request& req, httplib::Response& res) { complete(env, req, res); },
      BodyLimit::Sampling);
}

}  // namespace flare::emulator
