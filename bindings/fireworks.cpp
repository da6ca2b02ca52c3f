// flare.fireworks: the native half of flare's Fireworks client. Lua modules in
// stdlib/flare/fireworks/ build DeploymentManager, the trainer client and
// WeightSyncer on conn:request/conn:submit; conn:sampler is the sampling engine.
//
//   fireworks.connection{api_key=, base_url=, inference_url=, hotload_api_url=,
//                        additional_headers={name=value}, timeout_s=60, connect_timeout_s=10}
//     conn:request{method=, plane="control"|"inference"|"hotload"|"trainer", path=, body=,
//                  headers=, timeout_s=, what=, retries=3, backoff_s=1, accept={404, ...}}
//        -> {status=, body=<decoded JSON or nil>, text=, request_id=, retry_after=,
//            headers={<lower-case name> = value}}
//        (raises a structured error on transport failure or a status >= 300 not in accept)
//     conn:submit{...same...} -> future with :wait([timeout_s]), :done(), :cancel()
//     conn:sampler{model=, concurrency=64, adaptive=false, adaptive_initial=16, adaptive_min=1,
//                  adaptive_max=256, queue_target_s=0.5, timeout_s=600, max_attempts=7,
//                  backoff_initial_s=2, backoff_max_s=30, not_ready_attempts=10,
//                  not_ready_interval_s=5}
//        sampler:submit{prompts=, n=, max_tokens=, temperature=, top_p=, top_k=, stop=, seed=,
//                       logprobs=, top_logprobs=, echo=, prompt_cache_max_len=, on_error=}
//          -> future; future:wait() -> groups[prompt][sample] = completion table
//        sampler:stats() -> {requests=, retries=, rate_limited=, limit=, in_flight=}
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
#include "fireworks_args.hpp"
#include "json_convert.hpp"
#include "module.hpp"

namespace fw = flare::fireworks;
using namespace flare::lua::fwargs;

namespace {

const char* const kConnMeta = "flare.fireworks.Connection";
const char* const kFutureMeta = "flare.fireworks.Future";
const char* const kSamplerMeta = "flare.fireworks.Sampler";
const char* const kBatchMeta = "flare.fireworks.SampleFuture";

template <typename T>
std::shared_ptr<T>& check_ud(lua_State* L, int idx, const char* meta) {
  return *static_cast<std::shared_ptr<T>*>(luaL_checkudata(L, idx, meta));
}

template <typename T>
void push_ud(lua_State* L, std::shared_ptr<T> value, const char* meta) {
  void* mem = lua_newuserdata(L, sizeof(std::shared_ptr<T>));
  new (mem) std::shared_ptr<T>(std::move(value));
  luaL_getmetatable(L, meta);
  lua_setmetatable(L, -2);
}

template <typename T>
int gc_ud(lua_State* L) {
  static_cast<std::shared_ptr<T>*>(lua_touserdata(L, 1))->~shared_ptr<T>();
  return 0;
}

struct Future {
  std::shared_ptr<fw::RestCall> call;
  std::vector<int> accept;
};

// --- connection ---------------------------------------------------------------------------

int l_connection(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  const char* who = "flare.fireworks.connection";
  auto conn = std::make_shared<fw::Connection>();
  conn->api_key = opt_string(L, 1, "api_key", who).value_or("");
  if (auto v = opt_string(L, 1, "base_url", who)) conn->base_url = *v;
  conn->inference_url = opt_string(L, 1, "inference_url", who).value_or("");
  conn->hotload_api_url = opt_string(L, 1, "hotload_api_url", who).value_or("");
  if (auto v = opt_number(L, 1, "timeout_s", who)) conn->timeout_s = *v;
  if (auto v = opt_number(L, 1, "connect_timeout_s", who)) conn->connect_timeout_s = *v;
  if (auto v = opt_bool(L, 1, "verify_ssl", who)) conn->verify_ssl = *v ? 1 : 0;
  lua_getfield(L, 1, "additional_headers");
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
        throw flare::Error("invalid_argument",
                           "additional_headers must map header names to string values");
      }
      conn->additional_headers.emplace_back(lua_tostring(L, -2), lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  } else if (!lua_isnil(L, -1)) {
    throw flare::Error("invalid_argument", "additional_headers must be a table of name = value");
  }
  lua_pop(L, 1);
  conn->normalise();
  push_ud<const fw::Connection>(L, std::move(conn), kConnMeta);
  return 1;
}

fw::Plane plane_of(const std::string& name) {
  if (name == "control") return fw::Plane::Control;
  if (name == "inference") return fw::Plane::Inference;
  if (name == "hotload") return fw::Plane::Hotload;
  if (name == "trainer") return fw::Plane::Trainer;
  throw flare::Error(
      "invalid_argument",
      "request option 'plane' must be control, inference, hotload or trainer, got '" + name + "'");
}

Future start_request(lua_State* L) {
  auto& conn = check_ud<const fw::Connection>(L, 1, kConnMeta);
  luaL_checktype(L, 2, LUA_TTABLE);
  const char* who = "conn:request";
  fw::RestRequest r;
  r.method = opt_string(L, 2, "method", who).value_or("GET");
  r.plane = plane_of(opt_string(L, 2, "plane", who).value_or("control"));
  auto path = opt_string(L, 2, "path", who);
  if (!path || path->empty() || (*path)[0] != '/') {
    throw flare::Error("invalid_argument",
                       "conn:request: option 'path' must be a string starting with '/'");
  }
  r.path = *path;
  lua_getfield(L, 2, "body");
  if (lua_type(L, -1) == LUA_TSTRING) {
    r.body = lua_tostring(L, -1);
  } else if (!lua_isnil(L, -1)) {
    r.body = flare::lua::to_json(L, lua_gettop(L)).dump();
  }
  lua_pop(L, 1);
  lua_getfield(L, 2, "headers");
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
        r.headers.emplace_back(lua_tostring(L, -2), lua_tostring(L, -1));
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  r.timeout_s = opt_number(L, 2, "timeout_s", who).value_or(0);
  r.what = opt_string(L, 2, "what", who).value_or(r.method + " " + r.path);
  r.retry.max_attempts = static_cast<int>(opt_integer(L, 2, "retries", who).value_or(3));
  r.retry.backoff_initial_s = opt_number(L, 2, "backoff_s", who).value_or(1.0);
  r.retry.backoff_max_s = std::max(r.retry.backoff_initial_s, 10.0);
  Future f;
  lua_getfield(L, 2, "accept");
  if (lua_istable(L, -1)) f.accept = int_list(L, lua_gettop(L), "accept");
  lua_pop(L, 1);
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
  Future f = start_request(L);
  f.call->wait();
  return finish_request(L, f);
}

int l_submit(lua_State* L) {
  Future f = start_request(L);
  push_ud(L, std::make_shared<Future>(std::move(f)), kFutureMeta);
  return 1;
}

int l_future_wait(lua_State* L) {
  auto& f = check_ud<Future>(L, 1, kFutureMeta);
  double timeout = luaL_optnumber(L, 2, -1);
  if (!f->call->wait(timeout)) {
    throw flare::Error("timeout",
                       f->call->what() + ": no answer within " + std::to_string(timeout) + " s", 0,
                       true);
  }
  return finish_request(L, *f);
}

int l_future_done(lua_State* L) {
  lua_pushboolean(L, check_ud<Future>(L, 1, kFutureMeta)->call->done());
  return 1;
}

int l_future_cancel(lua_State* L) {
  check_ud<Future>(L, 1, kFutureMeta)->call->cancel_all("cancelled");
  return 0;
}

int l_conn_tostring(lua_State* L) {
  auto& c = check_ud<const fw::Connection>(L, 1, kConnMeta);
  std::string s =
      "fireworks.connection(" + c->base_url + ", key " + fw::redact_key(c->api_key) + ")";
  lua_pushstring(L, s.c_str());
  return 1;
}

int l_conn_redact(lua_State* L) {
  auto& c = check_ud<const fw::Connection>(L, 1, kConnMeta);
  size_t n = 0;
  const char* s = luaL_checklstring(L, 2, &n);
  std::string out = fw::redact_text({s, n}, c->api_key);
  lua_pushlstring(L, out.data(), out.size());
  return 1;
}

int l_conn_key(lua_State* L) {
  auto& c = check_ud<const fw::Connection>(L, 1, kConnMeta);
  lua_pushlstring(L, c->api_key.data(), c->api_key.size());
  return 1;
}

// --- sampler ------------------------------------------------------------------------------

int l_sampler(lua_State* L) {
  auto& conn = check_ud<const fw::Connection>(L, 1, kConnMeta);
  luaL_checktype(L, 2, LUA_TTABLE);
  const char* who = "sampler";
  fw::SamplerOptions o;
  auto model = opt_string(L, 2, "model", who);
  if (!model || model->empty())
    throw flare::Error("invalid_argument", "sampler: option 'model' is required");
  o.model = *model;
  o.concurrency = static_cast<int>(opt_integer(L, 2, "concurrency", who).value_or(o.concurrency));
  o.adaptive = opt_bool(L, 2, "adaptive", who).value_or(false);
  o.adaptive_initial =
      static_cast<int>(opt_integer(L, 2, "adaptive_initial", who).value_or(o.adaptive_initial));
  o.adaptive_min =
      static_cast<int>(opt_integer(L, 2, "adaptive_min", who).value_or(o.adaptive_min));
  o.adaptive_max =
      static_cast<int>(opt_integer(L, 2, "adaptive_max", who).value_or(o.adaptive_max));
  o.queue_target_s = opt_number(L, 2, "queue_target_s", who).value_or(o.queue_target_s);
  o.timeout_s = opt_number(L, 2, "timeout_s", who).value_or(o.timeout_s);
  o.retry.max_attempts =
      static_cast<int>(opt_integer(L, 2, "max_attempts", who).value_or(o.retry.max_attempts));
  o.retry.backoff_initial_s =
      opt_number(L, 2, "backoff_initial_s", who).value_or(o.retry.backoff_initial_s);
  o.retry.backoff_max_s = opt_number(L, 2, "backoff_max_s", who).value_or(o.retry.backoff_max_s);
  o.retry.not_ready_attempts = static_cast<int>(
      opt_integer(L, 2, "not_ready_attempts", who).value_or(o.retry.not_ready_attempts));
  o.retry.not_ready_interval_s =
      opt_number(L, 2, "not_ready_interval_s", who).value_or(o.retry.not_ready_interval_s);
  push_ud(L, fw::Sampler::create(conn, std::move(o)), kSamplerMeta);
  return 1;
}

int l_sampler_submit(lua_State* L) {
  auto& sampler = check_ud<fw::Sampler>(L, 1, kSamplerMeta);
  luaL_checktype(L, 2, LUA_TTABLE);
  const char* who = "sampler:sample";
  std::vector<fw::Prompt> prompts;
  lua_getfield(L, 2, "prompts");
  if (!lua_istable(L, -1))
    throw flare::Error("invalid_argument", "sampler:sample: option 'prompts' must be a list");
  int count = static_cast<int>(lua_objlen(L, -1));
  prompts.resize(static_cast<size_t>(count));
  for (int i = 1; i <= count; ++i) {
    lua_rawgeti(L, -1, i);
    fw::Prompt& p = prompts[static_cast<size_t>(i - 1)];
    if (lua_type(L, -1) == LUA_TSTRING) {
      size_t n = 0;
      const char* s = lua_tolstring(L, -1, &n);
      p.is_text = true;
      p.text.assign(s, n);
    } else if (lua_istable(L, -1)) {
      p.tokens = int_list(L, lua_gettop(L), "prompts[" + std::to_string(i) + "]");
    } else {
      throw flare::Error("invalid_argument", "sampler:sample: prompts[" + std::to_string(i) +
                                                 "] must be a string or a list of token ids, got " +
                                                 luaL_typename(L, -1));
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  fw::SamplingParams p;
  int n = static_cast<int>(opt_integer(L, 2, "n", who).value_or(1));
  p.max_tokens = static_cast<int>(opt_integer(L, 2, "max_tokens", who).value_or(p.max_tokens));
  p.temperature = opt_number(L, 2, "temperature", who).value_or(p.temperature);
  p.top_p = opt_number(L, 2, "top_p", who).value_or(p.top_p);
  p.top_k = static_cast<int>(opt_integer(L, 2, "top_k", who).value_or(p.top_k));
  p.stop = opt_strings(L, 2, "stop", who).value_or(std::vector<std::string>{});
  if (auto s = opt_integer(L, 2, "seed", who)) p.seed = *s;
  p.logprobs = opt_bool(L, 2, "logprobs", who).value_or(false);
  p.top_logprobs = static_cast<int>(opt_integer(L, 2, "top_logprobs", who).value_or(0));
  if (p.top_logprobs > 0) p.logprobs = true;
  p.echo = opt_bool(L, 2, "echo", who).value_or(false);
  p.prompt_cache_max_len =
      static_cast<int>(opt_integer(L, 2, "prompt_cache_max_len", who).value_or(-1));
  std::string on_error = opt_string(L, 2, "on_error", who).value_or("raise");
  if (on_error != "raise" && on_error != "return") {
    throw flare::Error("invalid_argument",
                       "sampler:sample: option 'on_error' must be \"raise\" or \"return\"");
  }
  if (n < 1) throw flare::Error("invalid_argument", "sampler:sample: option 'n' must be >= 1");
  if (p.max_tokens < 0)
    throw flare::Error("invalid_argument", "sampler:sample: option 'max_tokens' must be >= 0");
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

void push_completion(lua_State* L, const fw::Completion& c, const fw::SamplingParams& p) {
  lua_createtable(L, 0, 9);
  lua_pushlstring(L, c.text.data(), c.text.size());
  lua_setfield(L, -2, "text");
  push_ints(L, c.tokens);
  lua_setfield(L, -2, "tokens");
  if (p.logprobs) {
    push_numbers(L, c.logprobs);
    lua_setfield(L, -2, "logprobs");
    push_numbers(L, c.sampling_logprobs);
    lua_setfield(L, -2, "sampling_logprobs");
  }
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
  if (p.echo && !c.prompt_logprobs.empty()) {
    push_numbers(L, c.prompt_logprobs);
    lua_setfield(L, -2, "prompt_logprobs");
  }
  lua_pushlstring(L, c.finish_reason.data(), c.finish_reason.size());
  lua_setfield(L, -2, "finish_reason");
  lua_pushlstring(L, c.snapshot_identity.data(), c.snapshot_identity.size());
  lua_setfield(L, -2, "snapshot_identity");
  push_ints(L, c.prompt_tokens);
  lua_setfield(L, -2, "prompt_tokens");
}

int l_batch_wait(lua_State* L) {
  auto& batch = check_ud<fw::SampleBatch>(L, 1, kBatchMeta);
  double timeout = luaL_optnumber(L, 2, -1);
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
  lua_pushboolean(L, check_ud<fw::SampleBatch>(L, 1, kBatchMeta)->done());
  return 1;
}

int l_batch_cancel(lua_State* L) {
  check_ud<fw::SampleBatch>(L, 1, kBatchMeta)->cancel_all("cancelled");
  return 0;
}

int l_sampler_stats(lua_State* L) {
  auto s = check_ud<fw::Sampler>(L, 1, kSamplerMeta)->stats();
  lua_createtable(L, 0, 5);
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
  return 1;
}

// --- module functions ---------------------------------------------------------------------

int l_redact_key(lua_State* L) {
  size_t n = 0;
  const char* s = luaL_checklstring(L, 1, &n);
  lua_pushstring(L, fw::redact_key({s, n}).c_str());
  return 1;
}

int l_default_verify_ssl(lua_State* L) {
  lua_pushboolean(L, fw::default_verify_ssl(luaL_checkstring(L, 1)));
  return 1;
}

void new_class(lua_State* L, const char* meta, const luaL_Reg* methods, lua_CFunction gc) {
  luaL_newmetatable(L, meta);
  lua_newtable(L);
  for (const luaL_Reg* m = methods; m->name; ++m) {
    if (m->name[0] == '_' && m->name[1] == '_') continue;
    lua_pushcfunction(L, m->func);
    lua_setfield(L, -2, m->name);
  }
  lua_setfield(L, -2, "__index");
  for (const luaL_Reg* m = methods; m->name; ++m) {
    if (m->name[0] == '_' && m->name[1] == '_') {
      lua_pushcfunction(L, m->func);
      lua_setfield(L, -2, m->name);
    }
  }
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
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
  static const luaL_Reg sampler_methods[] = {
      {"submit", l_sampler_submit}, {"stats", l_sampler_stats}, {nullptr, nullptr}};
  static const luaL_Reg batch_methods[] = {{"wait", l_batch_wait},
                                           {"done", l_batch_done},
                                           {"cancel", l_batch_cancel},
                                           {nullptr, nullptr}};
  new_class(L, kConnMeta, conn_methods, gc_ud<const fw::Connection>);
  new_class(L, kFutureMeta, future_methods, gc_ud<Future>);
  new_class(L, kSamplerMeta, sampler_methods, gc_ud<fw::Sampler>);
  new_class(L, kBatchMeta, batch_methods, gc_ud<fw::SampleBatch>);

  static const luaL_Reg functions[] = {{"connection", l_connection},
                                       {"redact_key", l_redact_key},
                                       {"default_verify_ssl", l_default_verify_ssl},
                                       {nullptr, nullptr}};
  lua_newtable(L);
  for (const luaL_Reg* f = functions; f->name; ++f) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, -2, f->name);
  }
  return 1;
}

}  // namespace

FLARE_LUA_MODULE(fireworks, open_fireworks);
