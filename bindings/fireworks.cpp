// flare.fireworks: the native half of flare's Fireworks client. Lua modules in
// stdlib/flare/fireworks/ build DeploymentManager, the trainer client and
// WeightSyncer on conn:request/conn:submit; conn:sampler is the sampling engine.
//
//   fireworks.connection{api_key=, base_url=, inference_url=, hotload_api_url=,
//                        additional_headers={name=value}, timeout_s=60, connect_timeout_s=10}
//     conn:request{method=, plane="control"|"inference"|"hotload"|"trainer", path=, body=,
//                  headers=, timeout_s=, what=, retries=7, backoff_s=1, accept={404, ...}}
//        (retries: attempts in total for 408/429/5xx and connection failures, as the sampler's
//        max_attempts; the SDK's REST client keeps retrying those for up to 5 minutes)
//        -> {status=, body=<decoded JSON or nil>, text=, request_id=, retry_after=,
//            headers={<lower-case name> = value}}
//        (raises a structured error on transport failure or a status >= 300 not in accept)
//     conn:submit{...same...} -> future with :wait([timeout_s]), :done(), :cancel()
//     conn:sampler{model=, adaptive=true, concurrency=64 (the fixed window when not adaptive),
//                  initial_window=16, min_window=1, max_window=256, prefill_queue_target=0.5,
//                  additive_increase=1, multiplicative_decrease=0.5, ema_alpha=0.3,
//                  adjustment_interval=32, timeout_s=600, max_attempts=7,
//                  backoff_initial_s=2, backoff_max_s=30, not_ready_retries=10,
//                  not_ready_interval_s=5}
//        sampler:submit{prompts=, n=, max_tokens=, temperature=, top_p=, top_k=, stop=, seed=,
//                       logprobs=, top_logprobs=, echo=, prompt_cache_max_len=, stream=,
//                       on_error=}
//          -> future; future:wait() -> groups[prompt][sample] = completion table
//        sampler:stats() -> {requests=, retries=, rate_limited=, limit=, in_flight=, warnings=}
//        sampler:step_completed() -> {window=, requests=, avg_pq=, ..., avg_server_ttft=, ...}
//        sampler:window_size()
//     conn:redact(text), conn:api_key(), tostring(conn) (key redacted)
//   fireworks.redact_key(key), fireworks.default_verify_ssl(url)
// (flare.sleep keeps requests moving; flare.fs.isatty is the terminal check.)

#include <cctype>
#include <lua.hpp>
#include <memory>
#include <nlohmann/json.hpp>

#include "error_boundary.hpp"
#include "fireworks/api_error.hpp"
#include "fireworks/connection.hpp"
#include "fireworks/event_loop.hpp"
#include "fireworks/redact.hpp"
#include "fireworks/rest_call.hpp"
#include "fireworks/sampler.hpp"
#include "json_convert.hpp"
#include "lua_support.hpp"
#include "module.hpp"
#include "sandbox_policy.hpp"

namespace fw = flare::fireworks;
using flare::lua::check_udata;
using flare::lua::Options;
using flare::lua::push_strings;

namespace {

const char* const kConnMeta = "flare.fireworks.Connection";
const char* const kFutureMeta = "flare.fireworks.Future";
const char* const kSamplerMeta = "flare.fireworks.Sampler";
const char* const kBatchMeta = "flare.fireworks.SampleFuture";

template <typename T>
std::shared_ptr<T>& check_ud(lua_State* L, int idx, const char* meta, const char* who) {
  return check_udata<std::shared_ptr<T>>(L, idx, meta, who);
}

template <typename T>
void push_ud(lua_State* L, std::shared_ptr<T> value, const char* meta) {
  flare::lua::push_udata<std::shared_ptr<T>>(L, meta, std::move(value));
}

struct Future {
  std::shared_ptr<fw::RestCall> call;
  std::vector<int> accept;
};

// --- connection ---------------------------------------------------------------------------

int l_connection(lua_State* L) {
  Options o(L, 1, "flare.fireworks.connection");
  auto conn = std::make_shared<fw::Connection>();
  conn->api_key = o.string("api_key", "");
  conn->base_url = o.string("base_url", conn->base_url);
  conn->inference_url = o.string("inference_url", "");
  conn->hotload_api_url = o.string("hotload_api_url", "");
  conn->timeout_s = o.number("timeout_s", conn->timeout_s, 0);
  conn->connect_timeout_s = o.number("connect_timeout_s", conn->connect_timeout_s, 0);
  if (auto v = o.opt_boolean("verify_ssl")) conn->verify_ssl = *v ? 1 : 0;
  if (auto h = o.string_map("additional_headers")) conn->additional_headers = std::move(*h);
  o.finish();
  if (flare::sandbox::active()) {  // sandboxed code: configured endpoints only, keys stay in C++
    for (const auto* u : {&conn->base_url, &conn->inference_url, &conn->hotload_api_url})
      if (!u->empty()) flare::sandbox::check_url(*u, "flare.fireworks.connection");
  }
  if (conn->api_key.empty()) conn->api_key = flare::sandbox::key_for(conn->base_url);
  conn->normalise();
  if (flare::sandbox::active()) flare::sandbox::seal(conn.get());
  push_ud<const fw::Connection>(L, std::move(conn), kConnMeta);
  return 1;
}

fw::Plane plane_of(const Options& o, const std::string& name) {
  if (name == "control") return fw::Plane::Control;
  if (name == "inference") return fw::Plane::Inference;
  if (name == "hotload") return fw::Plane::Hotload;
  if (name == "trainer") return fw::Plane::Trainer;
  o.invalid("plane", "must be control, inference, hotload or trainer, got '" + name + "'");
}

Future start_request(lua_State* L, const char* who) {
  auto& conn = check_ud<const fw::Connection>(L, 1, kConnMeta, who);
  Options o(L, 2, who);
  fw::RestRequest r;
  r.method = o.string("method", "GET");
  r.plane = plane_of(o, o.string("plane", "control"));
  r.path = o.required_string("path");
  if (r.path.empty() || r.path[0] != '/') o.invalid("path", "must start with '/'");
  o.push_any("body");
  if (lua_type(L, -1) == LUA_TSTRING) {
    size_t n = 0;
    const char* p = lua_tolstring(L, -1, &n);
    r.body.assign(p, n);  // binary bodies (an uploaded file) keep their NUL bytes
  } else if (!lua_isnil(L, -1)) {
    r.body = flare::lua::to_json(L, lua_gettop(L), who).dump();
  }
  lua_pop(L, 1);
  if (auto h = o.string_map("headers")) r.headers = std::move(*h);
  r.timeout_s = o.number("timeout_s", 0, 0);
  r.what = o.string("what", r.method + " " + r.path);
  if (flare::sandbox::active()) {
    std::map<std::string, std::string> h(r.headers.begin(), r.headers.end());
    flare::sandbox::check_request(r.method, r.path, h);
  }
  r.retry.max_attempts = static_cast<int>(o.integer("retries", 7, 1));
  r.retry.backoff_initial_s = o.number("backoff_s", 1.0, 0);
  r.retry.backoff_max_s = std::max(r.retry.backoff_initial_s, 10.0);
  Future f;
  if (o.push_table("accept")) {
    f.accept = flare::lua::check_int_list(L, -1, who, "accept", 0, 100, 599);
    lua_pop(L, 1);
  }
  o.finish();
  f.call = fw::RestCall::start(conn, std::move(r));
  return f;
}

// Pushes the response table or throws the structured error.
int finish_request(lua_State* L, const Future& f) {
  const fw::RestCall& call = *f.call;
  if (call.error()) throw *call.error();
  const flare::net::Response& res = call.response();
  bool accepted = res.status >= 200 && res.status < 300;
  for (int s : f.accept) accepted = accepted || s == res.status;
  if (!accepted)
    throw fw::error_from_response(res, call.what(), call.connection().api_key, call.request_id());
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, res.status);
  lua_setfield(L, -2, "status");
  lua_createtable(L, 0, static_cast<int>(res.headers.items.size()));
  for (const auto& [name, value] : res.headers.items) {
    std::string lower = name;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    lua_pushlstring(L, value.data(), value.size());
    lua_setfield(L, -2, lower.c_str());
  }
  lua_setfield(L, -2, "headers");
  if (!res.body.empty()) {
    auto doc = nlohmann::json::parse(res.body, nullptr, false);
    if (!doc.is_discarded()) {
      flare::lua::push_json(L, doc);
      lua_setfield(L, -2, "body");
    } else {
      lua_pushlstring(L, res.body.data(), res.body.size());
      lua_setfield(L, -2, "text");
    }
  }
  const std::string* rid = res.headers.find("x-request-id");
  lua_pushstring(L, rid ? rid->c_str() : call.request_id().c_str());
  lua_setfield(L, -2, "request_id");
  double after = fw::retry_after_s(res.headers);
  if (after >= 0) {
    lua_pushnumber(L, after);
    lua_setfield(L, -2, "retry_after");
  }
  return 1;
}

int l_request(lua_State* L) {
  Future f = start_request(L, "conn:request");
  f.call->wait();
  return finish_request(L, f);
}

int l_submit(lua_State* L) {
  Future f = start_request(L, "conn:submit");
  push_ud(L, std::make_shared<Future>(std::move(f)), kFutureMeta);
  return 1;
}

int l_future_wait(lua_State* L) {
  auto& f = check_ud<Future>(L, 1, kFutureMeta, "future:wait");
  double timeout = flare::lua::opt_number(L, 2, "future:wait", "timeout_s").value_or(-1);
  if (!f->call->wait(timeout)) {
    throw flare::Error("timeout",
                       f->call->what() + ": no answer within " + std::to_string(timeout) + " s", 0,
                       true);
  }
  return finish_request(L, *f);
}

int l_future_done(lua_State* L) {
  lua_pushboolean(L, check_ud<Future>(L, 1, kFutureMeta, "future:done")->call->done());
  return 1;
}

int l_future_cancel(lua_State* L) {
  check_ud<Future>(L, 1, kFutureMeta, "future:cancel")->call->cancel_all("cancelled");
  return 0;
}

int l_conn_tostring(lua_State* L) {
  auto& c = check_ud<const fw::Connection>(L, 1, kConnMeta, "conn:__tostring");
  std::string s =
      "fireworks.connection(" + c->base_url + ", key " + fw::redact_key(c->api_key) + ")";
  lua_pushstring(L, s.c_str());
  return 1;
}

int l_conn_redact(lua_State* L) {
  auto& c = check_ud<const fw::Connection>(L, 1, kConnMeta, "conn:redact");
  std::string out =
      fw::redact_text(flare::lua::check_string(L, 2, "conn:redact", "text"), c->api_key);
  lua_pushlstring(L, out.data(), out.size());
  return 1;
}

int l_conn_key(lua_State* L) {
  auto& c = check_ud<const fw::Connection>(L, 1, kConnMeta, "conn:api_key");
  if (!flare::sandbox::key_readable(c.get())) {  // never readable by sandboxed code
    lua_pushnil(L);
    return 1;
  }
  lua_pushlstring(L, c->api_key.data(), c->api_key.size());
  return 1;
}

// --- sampler ------------------------------------------------------------------------------

int l_sampler(lua_State* L) {
  const char* who = "conn:sampler";
  auto& conn = check_ud<const fw::Connection>(L, 1, kConnMeta, who);
  Options o(L, 2, who);
  fw::SamplerOptions so;
  so.model = o.required_string("model");
  if (so.model.empty()) o.invalid("model", "must not be empty");
  flare::sandbox::check_model(so.model, who);
  fw::ConcurrencyOptions& c = so.concurrency;
  c.adaptive = o.boolean("adaptive", c.adaptive);
  c.fixed_window = static_cast<int>(o.integer("concurrency", c.fixed_window, 1));
  c.initial_window = static_cast<int>(o.integer("initial_window", c.initial_window, 1));
  c.min_window = static_cast<int>(o.integer("min_window", c.min_window, 1));
  c.max_window = static_cast<int>(o.integer("max_window", c.max_window, 1));
  c.prefill_queue_target = o.number("prefill_queue_target", c.prefill_queue_target, 0);
  c.additive_increase = o.number("additive_increase", c.additive_increase, 0);
  c.multiplicative_decrease = o.number("multiplicative_decrease", c.multiplicative_decrease, 0, 1);
  c.ema_alpha = o.number("ema_alpha", c.ema_alpha, 0, 1);
  c.adjustment_interval =
      static_cast<int>(o.integer("adjustment_interval", c.adjustment_interval, 0));
  so.timeout_s = o.number("timeout_s", so.timeout_s, 0);
  so.retry.max_attempts = static_cast<int>(o.integer("max_attempts", so.retry.max_attempts, 1));
  so.retry.backoff_initial_s = o.number("backoff_initial_s", so.retry.backoff_initial_s, 0);
  so.retry.backoff_max_s = o.number("backoff_max_s", so.retry.backoff_max_s, 0);
  so.retry.not_ready_retries =
      static_cast<int>(o.integer("not_ready_retries", so.retry.not_ready_retries, 0));
  so.retry.not_ready_interval_s =
      o.number("not_ready_interval_s", so.retry.not_ready_interval_s, 0);
  o.finish();
  push_ud(L, fw::Sampler::create(conn, std::move(so)), kSamplerMeta);
  return 1;
}

// The request path of every sample: the prompts are read with no allocation
// beyond their own (names for errors are built only when one is raised).
int l_sampler_submit(lua_State* L) {
  const char* who = "sampler:sample";
  auto& sampler = check_ud<fw::Sampler>(L, 1, kSamplerMeta, who);
  Options o(L, 2, who);
  std::vector<fw::Prompt> prompts;
  if (!o.push_table("prompts")) o.missing("prompts", "a list of prompts");
  int list = lua_gettop(L);
  int count = static_cast<int>(lua_objlen(L, list));
  prompts.resize(static_cast<size_t>(count));
  for (int i = 1; i <= count; ++i) {
    lua_rawgeti(L, list, i);
    fw::Prompt& p = prompts[static_cast<size_t>(i - 1)];
    if (lua_type(L, -1) == LUA_TSTRING) {
      size_t n = 0;
      const char* s = lua_tolstring(L, -1, &n);
      p.is_text = true;
      p.text.assign(s, n);
    } else if (lua_istable(L, -1)) {
      p.tokens = flare::lua::check_int_list(L, -1, who, "prompts", i);
    } else {
      flare::lua::raise_invalid(who, "prompts[" + std::to_string(i) +
                                         "] must be a string or a list of token ids, got " +
                                         flare::lua::type_of(L, -1));
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  fw::SamplingParams p;
  int n = static_cast<int>(o.integer("n", 1, 1));
  p.max_tokens = static_cast<int>(o.integer("max_tokens", p.max_tokens, 0));
  p.temperature = o.number("temperature", p.temperature, 0);
  p.top_p = o.number("top_p", p.top_p, 0, 1);
  p.top_k = static_cast<int>(o.integer("top_k", p.top_k, 0));
  p.stop = o.strings("stop").value_or(std::vector<std::string>{});
  constexpr long long kSeedMax = 9007199254740992;  // exact in a Lua number
  if (auto s = o.opt_integer("seed", -kSeedMax, kSeedMax)) p.seed = *s;
  p.logprobs = o.boolean("logprobs", false);
  p.top_logprobs = static_cast<int>(o.integer("top_logprobs", 0, 0));
  if (p.top_logprobs > 0) p.logprobs = true;
  p.echo = o.boolean("echo", false);
  p.prompt_cache_max_len = static_cast<int>(o.integer("prompt_cache_max_len", -1, -1));
  p.stream = o.boolean("stream", false);
  std::string on_error = o.string("on_error", "raise");
  if (on_error != "raise" && on_error != "return")
    o.invalid("on_error", "must be \"raise\" or \"return\", got \"" + on_error + "\"");
  o.finish();
  push_ud(L, sampler->submit(std::move(prompts), std::move(p), n, on_error == "raise"), kBatchMeta);
  return 1;
}

void push_numbers(lua_State* L, const std::vector<double>& v) {
  lua_createtable(L, static_cast<int>(v.size()), 0);
  for (size_t i = 0; i < v.size(); ++i) {
    lua_pushnumber(L, v[i]);
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
}

void push_ints(lua_State* L, const std::vector<int>& v) {
  lua_createtable(L, static_cast<int>(v.size()), 0);
  for (size_t i = 0; i < v.size(); ++i) {
    lua_pushinteger(L, v[i]);
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
}

void push_metrics(lua_State* L, const fw::ServerMetrics& m) {
  lua_createtable(L, 0, 8);
  auto num = [&](const char* name, double v) {
    if (v < 0) return;
    lua_pushnumber(L, v);
    lua_setfield(L, -2, name);
  };
  num("num_concurrent_requests", static_cast<double>(m.num_concurrent_requests));
  num("prefill_queue_duration", m.prefill_queue_duration);
  num("generation_queue_duration", m.generation_queue_duration);
  num("server_ttft", m.server_ttft);
  num("cached_prompt_tokens", static_cast<double>(m.cached_prompt_tokens));
  num("prompt_tokens", static_cast<double>(m.prompt_tokens));
  num("server_processing_time", m.server_processing_time);
  num("client_ttft", m.client_ttft);
}

// A SampledCompletion under the SDK's field names (full_tokens, prompt_len,
// completion_len, inference_logprobs, sampling_logprobs, logprobs_echoed,
// finish_reason), with flare's own: tokens and prompt_tokens (the two halves
// of full_tokens), logprobs (= inference_logprobs), snapshot_identity, metrics.
void push_completion(lua_State* L, const fw::Completion& c, const fw::SamplingParams& p) {
  lua_createtable(L, 0, 16);
  lua_pushlstring(L, c.text.data(), c.text.size());
  lua_setfield(L, -2, "text");
  push_ints(L, c.tokens);
  lua_setfield(L, -2, "tokens");
  push_ints(L, c.prompt_tokens);
  lua_setfield(L, -2, "prompt_tokens");
  const int plen = static_cast<int>(c.prompt_tokens.size());
  const int clen = static_cast<int>(c.tokens.size());
  lua_createtable(L, plen + clen, 0);
  for (int i = 0; i < plen; ++i) {
    lua_pushinteger(L, c.prompt_tokens[static_cast<size_t>(i)]);
    lua_rawseti(L, -2, i + 1);
  }
  for (int i = 0; i < clen; ++i) {
    lua_pushinteger(L, c.tokens[static_cast<size_t>(i)]);
    lua_rawseti(L, -2, plen + i + 1);
  }
  lua_setfield(L, -2, "full_tokens");
  lua_pushinteger(L, plen);
  lua_setfield(L, -2, "prompt_len");
  lua_pushinteger(L, clen);
  lua_setfield(L, -2, "completion_len");
  if (p.logprobs) {
    push_numbers(L, c.logprobs);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "inference_logprobs");
    lua_setfield(L, -2, "logprobs");
    if (c.sampling_source != fw::SamplingLogprobs::Missing) {
      push_numbers(L, c.sampling_logprobs);
      lua_setfield(L, -2, "sampling_logprobs");
    }
  }
  lua_pushboolean(L, c.logprobs_echoed);
  lua_setfield(L, -2, "logprobs_echoed");
  if (p.top_logprobs > 0) {
    lua_createtable(L, static_cast<int>(c.top_logprobs.size()), 0);
    for (size_t k = 0; k < c.top_logprobs.size(); ++k) {
      lua_createtable(L, 0, static_cast<int>(c.top_logprobs[k].size()));
      for (const auto& t : c.top_logprobs[k]) {
        lua_pushnumber(L, t.logprob);
        lua_rawseti(L, -2, t.token_id);
      }
      lua_rawseti(L, -2, static_cast<int>(k + 1));
    }
    lua_setfield(L, -2, "top_logprobs");
  }
  lua_pushlstring(L, c.finish_reason.data(), c.finish_reason.size());
  lua_setfield(L, -2, "finish_reason");
  lua_pushlstring(L, c.snapshot_identity.data(), c.snapshot_identity.size());
  lua_setfield(L, -2, "snapshot_identity");
  push_metrics(L, c.metrics);
  lua_setfield(L, -2, "metrics");
}

int l_batch_wait(lua_State* L) {
  auto& batch = check_ud<fw::SampleBatch>(L, 1, kBatchMeta, "future:wait");
  double timeout = flare::lua::opt_number(L, 2, "future:wait", "timeout_s").value_or(-1);
  if (!batch->wait(timeout)) {
    throw flare::Error("timeout", "sampling: not finished within " + std::to_string(timeout) + " s",
                       0, true);
  }
  if (batch->failure()) throw *batch->failure();
  const auto& results = batch->results();
  int n = batch->n();
  lua_createtable(L, batch->prompt_count(), 0);
  for (int i = 0; i < batch->prompt_count(); ++i) {
    lua_createtable(L, n, 0);
    for (int j = 0; j < n; ++j) {
      const fw::SampleResult& r = results[static_cast<size_t>(i * n + j)];
      if (r.error) {
        lua_createtable(L, 0, 1);
        flare::lua::push_error_table(L, *r.error);
        lua_setfield(L, -2, "error");
      } else {
        push_completion(L, r.completion, batch->params());
      }
      lua_rawseti(L, -2, j + 1);
    }
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

int l_batch_done(lua_State* L) {
  lua_pushboolean(L, check_ud<fw::SampleBatch>(L, 1, kBatchMeta, "future:done")->done());
  return 1;
}

int l_batch_cancel(lua_State* L) {
  check_ud<fw::SampleBatch>(L, 1, kBatchMeta, "future:cancel")->cancel_all("cancelled");
  return 0;
}

int l_sampler_stats(lua_State* L) {
  auto s = check_ud<fw::Sampler>(L, 1, kSamplerMeta, "sampler:stats")->stats();
  lua_createtable(L, 0, 6);
  lua_pushnumber(L, static_cast<double>(s.requests));
  lua_setfield(L, -2, "requests");
  lua_pushnumber(L, static_cast<double>(s.retries));
  lua_setfield(L, -2, "retries");
  lua_pushnumber(L, static_cast<double>(s.rate_limited));
  lua_setfield(L, -2, "rate_limited");
  lua_pushnumber(L, s.limit);
  lua_setfield(L, -2, "limit");
  lua_pushnumber(L, static_cast<double>(s.in_flight));
  lua_setfield(L, -2, "in_flight");
  push_strings(L, s.warnings);
  lua_setfield(L, -2, "warnings");
  return 1;
}

int l_sampler_step_completed(lua_State* L) {
  auto summary =
      check_ud<fw::Sampler>(L, 1, kSamplerMeta, "sampler:step_completed")->step_completed();
  lua_createtable(L, 0, static_cast<int>(summary.size()));
  for (const auto& [name, value] : summary) {
    lua_pushnumber(L, value);
    lua_setfield(L, -2, name.c_str());
  }
  return 1;
}

int l_sampler_window(lua_State* L) {
  lua_pushinteger(L,
                  check_ud<fw::Sampler>(L, 1, kSamplerMeta, "sampler:window_size")->stats().limit);
  return 1;
}

// --- module functions ---------------------------------------------------------------------

int l_redact_key(lua_State* L) {
  auto key = flare::lua::check_string(L, 1, "flare.fireworks.redact_key", "key");
  lua_pushstring(L, fw::redact_key(key).c_str());
  return 1;
}

int l_default_verify_ssl(lua_State* L) {
  auto url = flare::lua::check_string(L, 1, "flare.fireworks.default_verify_ssl", "url");
  lua_pushboolean(L, fw::default_verify_ssl(std::string(url)));
  return 1;
}

int open_fireworks(lua_State* L) {
  static const luaL_Reg conn_methods[] = {{"request", l_request},  {"submit", l_submit},
                                          {"sampler", l_sampler},  {"redact", l_conn_redact},
                                          {"api_key", l_conn_key}, {"__tostring", l_conn_tostring},
                                          {nullptr, nullptr}};
  static const luaL_Reg future_methods[] = {{"wait", l_future_wait},
                                            {"done", l_future_done},
                                            {"cancel", l_future_cancel},
                                            {nullptr, nullptr}};
  static const luaL_Reg sampler_methods[] = {{"submit", l_sampler_submit},
                                             {"stats", l_sampler_stats},
                                             {"step_completed", l_sampler_step_completed},
                                             {"window_size", l_sampler_window},
                                             {nullptr, nullptr}};
  static const luaL_Reg batch_methods[] = {{"wait", l_batch_wait},
                                           {"done", l_batch_done},
                                           {"cancel", l_batch_cancel},
                                           {nullptr, nullptr}};
  using flare::lua::gc_udata;
  using flare::lua::register_class;
  register_class(L, kConnMeta, conn_methods, gc_udata<std::shared_ptr<const fw::Connection>>);
  register_class(L, kFutureMeta, future_methods, gc_udata<std::shared_ptr<Future>>);
  register_class(L, kSamplerMeta, sampler_methods, gc_udata<std::shared_ptr<fw::Sampler>>);
  register_class(L, kBatchMeta, batch_methods, gc_udata<std::shared_ptr<fw::SampleBatch>>);

  static const luaL_Reg functions[] = {{"connection", l_connection},
                                       {"redact_key", l_redact_key},
                                       {"default_verify_ssl", l_default_verify_ssl},
                                       {nullptr, nullptr}};
  flare::lua::push_functions(L, functions);
  return 1;
}

}  // namespace

FLARE_LUA_MODULE(fireworks, open_fireworks);
