#include <charconv>
#include <chrono>
#include <cstdint>
#include <random>
#include <stdexcept>

#include "emulator/engine/validate.hpp"
#include "emulator/server/api_error.hpp"
#include "emulator/server/openai_compat.hpp"
#include "emulator/server/routes.hpp"

namespace flare::emulator {
namespace {

struct Parsed {
  std::string deployment_id;  // empty: the LoRA model `addon_model` picks its engine
  std::string addon_model;    // "accounts/<a>/models/<m>" before '#', or the whole name
  std::vector<int> prompt;
  engine::SamplingParams params;
  bool raw_output = false;
  bool stream = false;
  bool perf_metrics = false;  // perf_metrics_in_response: timings in the last stream chunk
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
  std::string models_prefix = "accounts/" + cp.account + "/models/";
  if (model.find('#') == std::string::npos && model.rfind(models_prefix, 0) == 0) {
    p.addon_model = model;  // a LoRA addon by its model name alone
  } else {
    p.deployment_id = deployment_of_model(cp, model);
    if (model.find('#') != std::string::npos) p.addon_model = model.substr(0, model.find('#'));
  }
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
  p.perf_metrics = get_bool(body, "perf_metrics_in_response", false);
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

// With echo the answer covers prompt + completion: its text, its logprobs and,
// as the Fireworks API returns them, its raw_output.completion_token_ids.
std::vector<int> completion_ids(const Parsed& p, const engine::Result& r, const engine::Choice& c) {
  if (!p.params.echo) return c.tokens;
  std::vector<int> ids = r.prompt_tokens;
  ids.insert(ids.end(), c.tokens.begin(), c.tokens.end());
  return ids;
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
    j["raw_output"] = {{"prompt_token_ids", r.prompt_tokens},
                       {"completion_token_ids", completion_ids(p, r, c)}};
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
    if (p.params.echo) {
      append_ids(out, completion_ids(p, r, c));
    } else {
      append_ids(out, c.tokens);
    }
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
// The deployed model serving `p.addon_model` when it names one of this
// server's LoRA models (nullptr otherwise: the base model); fills in
// p.deployment_id when the request named the model alone.
const DeployedModel* find_addon(ControlPlane& cp, Parsed& p) {
  std::string prefix = "accounts/" + cp.account + "/models/";
  if (p.addon_model.rfind(prefix, 0) != 0) return nullptr;
  std::string model_id = p.addon_model.substr(prefix.size());
  if (!cp.lora_models.count(model_id)) {
    if (!p.deployment_id.empty()) return nullptr;  // a base model name before '#'
    not_found("model '" + p.addon_model + "' not found");
  }
  std::vector<const DeployedModel*> on;
  for (const auto& [id, dm] : cp.deployed_models) {
    if (dm.model_id == model_id && (p.deployment_id.empty() || dm.deployment_id == p.deployment_id))
      on.push_back(&dm);
  }
  if (on.empty()) {
    not_found("model '" + p.addon_model + "' is not deployed" +
              (p.deployment_id.empty() ? std::string() : " on deployment " + p.deployment_id) +
              "; load it with POST /v1/accounts/" + cp.account + "/deployedModels");
  }
  if (on.size() > 1) {
    bad_request("model '" + p.addon_model +
                "' is deployed on several engines; name one as '<model>#accounts/" + cp.account +
                "/deployments/<id>'");
  }
  p.deployment_id = on[0]->deployment_id;
  return on[0];
}

struct Admitted {
  std::shared_ptr<Serving> serving;
  std::shared_ptr<const model::Adapter> adapter;  // a LoRA addon's; nullptr for the engine's own
};

Admitted admit(ControlPlane& cp, Parsed& p, std::string* base_model) {
  std::lock_guard lock(cp.mu);
  const DeployedModel* addon = find_addon(cp, p);
  const std::string& id = p.deployment_id;
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
  Admitted out{d.serving, nullptr};
  if (addon) {
    auto at = s.addons.find(addon->id);
    if (at == s.addons.end()) {
      std::string status = addon_status(cp, *addon);
      if (status == "FAILED")
        throw ApiError(400, "FAILED_PRECONDITION",
                       "deployed model " + addon->id + " failed: " + addon->failure);
      throw ApiError(503, "DEPLOYMENT_SCALING_UP",
                     "deployed model " + addon->id + " is " + status + "; retry shortly", 0.05);
    }
    out.adapter = at->second;
    *base_model = p.addon_model;
  } else {
    *base_model = d.base_model();
  }
  ++s.inflight;
  s.last_used = now_s();
  return out;
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

std::string seconds_text(double seconds) {
  char buf[48];  // "%f", as std::to_string(double) writes it, without printf
  return std::string(
      buf, std::to_chars(buf, buf + sizeof buf, seconds, std::chars_format::fixed, 6).ptr);
}

// The server metrics the Fireworks SDK reads (ServerMetrics.from_headers), under
// its names, measured by the engine for this request. There is no prompt
// cache, so no prompt token is ever cached.
struct Metric {
  const char* name;
  std::string value;
};
std::vector<Metric> server_metrics(const engine::Result& r, double processing_s) {
  return {{"num-concurrent-requests", std::to_string(r.concurrent_requests)},
          {"prefill-queue-duration", seconds_text(r.queue_seconds)},
          {"generation-queue-duration", seconds_text(r.generation_queue_seconds)},
          {"server-time-to-first-token", seconds_text(r.first_token_seconds)},
          {"cached-prompt-tokens", "0"},
          {"prompt-tokens", std::to_string(r.prompt_tokens.size())},
          {"server-processing-time", seconds_text(processing_s)}};
}

void set_timing_headers(httplib::Response& res, const engine::Result& r, double seconds) {
  res.set_header("fireworks-snapshot-identity", r.snapshot_identity);
  for (auto& m : server_metrics(r, seconds)) {
    res.set_header(std::string("fireworks-") + m.name, m.value);
    res.set_header(m.name, std::move(m.value));
  }
}

nlohmann::json usage_json(const engine::Result& r) {
  long prompt = static_cast<long>(r.prompt_tokens.size());
  return {{"prompt_tokens", prompt},
          {"completion_tokens", r.completion_tokens},
          {"total_tokens", prompt + r.completion_tokens}};
}

// One SSE event holding a text_completion chunk of the given choices.
std::string stream_event(const std::string& id, long created, const std::string& model,
                         nlohmann::json choices, const nlohmann::json* extra = nullptr) {
  nlohmann::json j = {{"id", id},
                      {"object", "text_completion"},
                      {"created", created},
                      {"model", model},
                      {"choices", std::move(choices)}};
  if (extra) j.update(*extra);
  return "data: " + j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n\n";
}

// The chunk of one token without logprobs, the common case, written as text:
// the same bytes as stream_event's dump (keys in sorted order).
void append_token_event(std::string& out, const std::string& id, long created,
                        const std::string& model, bool raw_output, int index, int token,
                        const std::string& piece) {
  out += "data: {\"choices\":[{\"finish_reason\":null,\"index\":";
  append_int(out, index);
  if (raw_output) {
    out += ",\"raw_output\":{\"completion_token_ids\":[";
    append_int(out, token);
    out += "]}";
  }
  out += ",\"text\":";
  append_json_text(out, piece);
  out += "}],\"created\":";
  append_int(out, created);
  out += ",\"id\":\"";
  out += id;
  out += "\",\"model\":";
  append_json_text(out, model);
  out += ",\"object\":\"text_completion\"}\n\n";
}

constexpr const char* kDone = "data: [DONE]\n\n";

// Streaming: the engine runs on the connection's own thread, inside the
// content provider, and each token is written to the socket as it is sampled.
// The headers go out first, so they carry what is known before generation;
// the timings come in the last chunk's perf_metrics when the request asks.
void stream_completion(ControlPlane& cp, std::shared_ptr<Serving> serving,
                       std::shared_ptr<const model::Adapter> adapter, Parsed p,
                       std::string base_model, httplib::Response& res,
                       std::chrono::steady_clock::time_point t0) {
  bool truncate = take_truncate_fault();
  std::string snapshot = serving->engine->snapshot_identity();
  res.set_header("fireworks-snapshot-identity", snapshot);
  res.set_header("prompt-tokens", std::to_string(p.prompt.size()));
  res.set_header("cached-prompt-tokens", "0");
  res.set_header("Cache-Control", "no-cache");
  auto guard = std::shared_ptr<InflightGuard>(new InflightGuard{cp, serving});
  res.set_chunked_content_provider("text/event-stream", [guard, serving, adapter, p = std::move(p),
                                                         base_model = std::move(base_model),
                                                         truncate,
                                                         t0](size_t, httplib::DataSink& sink) {
    const std::string id = random_id();
    const long created = static_cast<long>(now_s());
    std::string model = base_model + "@" + serving->engine->snapshot_identity();
    std::string chunk, pending;
    bool cut = false, gone = false;
    auto write = [&](const std::string& e) {
      if (cut) return;
      if (!sink.write(e.data(), e.size())) {
        gone = true;
        throw std::runtime_error("the client went away");
      }
      if (truncate) cut = true;  // injected: the stream ends after one event
    };
    try {
      auto on_token = [&](int index, const engine::TokenLogprob& tok, const std::string& piece) {
        chunk.clear();
        if (p.params.logprobs) {
          nlohmann::json choice = {{"index", index},
                                   {"text", piece},
                                   {"finish_reason", nullptr},
                                   {"logprobs", {{"content", {token_json(tok)}}}}};
          if (p.raw_output) choice["raw_output"] = {{"completion_token_ids", {tok.token}}};
          chunk = stream_event(id, created, model, nlohmann::json::array({choice}));
        } else {
          append_token_event(chunk, id, created, model, p.raw_output, index, tok.token, piece);
        }
        if (truncate) {
          write(chunk);  // event by event, so that the injected cut falls mid-stream
        } else {
          pending += chunk;
        }
      };
      // The events the engine delivered together go out in one write, the ones
      // that came with the request's end together with the last chunk.
      auto on_flush = [&] {
        if (pending.empty()) return;
        write(pending);
        pending.clear();
      };
      engine::Result r = serving->engine->complete(p.prompt, p.params, on_token, on_flush, adapter);
      model = base_model + "@" + r.snapshot_identity;
      nlohmann::json choices = nlohmann::json::array();
      for (size_t i = 0; i < r.choices.size(); ++i) {
        nlohmann::json c = {
            {"index", i}, {"text", ""}, {"finish_reason", r.choices[i].finish_reason}};
        if (p.raw_output) {
          c["raw_output"] = {{"prompt_token_ids", r.prompt_tokens},
                             {"completion_token_ids", completion_ids(p, r, r.choices[i])}};
        }
        choices.push_back(std::move(c));
      }
      nlohmann::json extra = {{"usage", usage_json(r)}};
      if (p.perf_metrics) {
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        nlohmann::json pm = nlohmann::json::object();
        for (auto& m : server_metrics(r, secs)) pm[m.name] = std::move(m.value);
        extra["perf_metrics"] = std::move(pm);
      }
      pending += stream_event(id, created, model, std::move(choices), &extra);
      pending += kDone;
      write(pending);
    } catch (const std::exception& e) {
      if (!cut && !gone) {
        std::string err =
            "data: " +
            nlohmann::json{{"error", {{"code", "INTERNAL"}, {"message", e.what()}}}}.dump(
                -1, ' ', false, nlohmann::json::error_handler_t::replace) +
            "\n\n" + kDone;
        sink.write(err.data(), err.size());
      }
    }
    if (cut || gone) return false;  // closes the connection mid-stream
    sink.done();
    return true;
  });
}

}  // namespace

void complete_one(RouteEnv& env, const nlohmann::json& body, httplib::Response& res) {
  auto t0 = std::chrono::steady_clock::now();
  Parsed p = parse_request(env.cp, body);
  std::string base_model;
  auto [serving, adapter] = admit(env.cp, p, &base_model);
  try {
    engine::validate_request(p.prompt, p.params, *serving->cfg);
  } catch (...) {
    InflightGuard release{env.cp, serving};
    throw;
  }
  if (p.stream) {
    stream_completion(env.cp, serving, adapter, std::move(p), base_model, res, t0);
    return;
  }
  InflightGuard guard{env.cp, serving};
  engine::Result r = serving->engine->complete(p.prompt, p.params, nullptr, nullptr, adapter);
  std::string out = completion_json(p, r, base_model + "@" + r.snapshot_identity);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  set_timing_headers(res, r, secs);
  res.status = 200;
  res.body = std::move(out);
  res.set_header("Content-Type", "application/json");
}

namespace {

void complete(RouteEnv& env, const httplib::Request& req, httplib::Response& res) {
  nlohmann::json body = parse_body(req);
  if (is_prompt_batch(body)) return complete_batch(env, body, res);
  complete_one(env, body, res);
}

}  // namespace

void add_completion_routes(Router& r, RouteEnv& env) {
  r.post(
      "/inference/v1/completions", Auth::Bearer,
      [&env](const httplib::Request& req, httplib::Response& res) { complete(env, req, res); },
      BodyLimit::Sampling);
}

}  // namespace flare::emulator
