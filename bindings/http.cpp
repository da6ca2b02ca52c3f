// flare.http: request{...} -> {status=, headers=, body=, total_s=};
// submit{...} -> handle with :wait() and :done(); flare.wait_all(handles) -> responses.
// All of them run on the process-wide client (one event loop), so every
// request in flight progresses while any of them is waited for. Response header
// names are lower-cased; repeated headers are joined with ", ".
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lua_support.hpp"
#include "module.hpp"
#include "net/http_client.hpp"
#include "sandbox_policy.hpp"

namespace flare::lua {
namespace {

using net::Request;
using net::RequestId;
using net::Response;

const char* const kHandleMeta = "flare.http.handle";

struct Outcome {
  RequestId id = 0;
  bool done = false;
  std::optional<Response> response;
  std::optional<flare::Error> error;
};

struct Handle {
  std::shared_ptr<Outcome> outcome;
};

Request read_request(lua_State* L, int idx, const char* who) {
  Options o(L, idx, who);
  Request r;
  r.url = o.required_string("url");
  flare::sandbox::check_url(r.url, who);
  r.method = o.string("method", r.method);
  for (auto& c : r.method)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
  r.body = o.string("body", r.body);
  if (auto headers = o.string_map("headers"))
    for (auto& [name, value] : *headers) r.headers.add(std::move(name), std::move(value));
  r.timeout_s = o.number("timeout_s", r.timeout_s, 0);
  r.connect_timeout_s = o.number("connect_timeout_s", r.connect_timeout_s, 0);
  o.finish();
  return r;
}

void push_response(lua_State* L, const Response& r) {
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, r.status);
  lua_setfield(L, -2, "status");
  lua_pushlstring(L, r.body.data(), r.body.size());
  lua_setfield(L, -2, "body");
  lua_pushnumber(L, r.total_s);
  lua_setfield(L, -2, "total_s");
  lua_createtable(L, 0, static_cast<int>(r.headers.items.size()));
  std::string name;
  for (const auto& [raw_name, value] : r.headers.items) {
    name = raw_name;
    for (auto& c : name)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    lua_getfield(L, -1, name.c_str());
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_pushlstring(L, value.data(), value.size());
    } else {
      std::string joined = std::string(lua_tostring(L, -1)) + ", " + value;
      lua_pop(L, 1);
      lua_pushlstring(L, joined.data(), joined.size());
    }
    lua_setfield(L, -2, name.c_str());
  }
  lua_setfield(L, -2, "headers");
}

std::shared_ptr<Outcome> start(lua_State* L, int idx, const char* who) {
  Request request = read_request(L, idx, who);
  auto outcome = std::make_shared<Outcome>();
  outcome->id = net::shared_client().submit(
      std::move(request), [outcome](Response* response, const flare::Error* error) {
        outcome->done = true;
        if (response) outcome->response = std::move(*response);
        if (error) outcome->error = *error;
      });
  return outcome;
}

// Pushes the response, or throws the transport error.
void finish(lua_State* L, const Outcome& o) {
  if (o.error) throw *o.error;
  push_response(L, *o.response);
}

Handle* check_handle(lua_State* L, int idx, const char* who) {
  auto* h = &check_udata<Handle>(L, idx, kHandleMeta, who);
  if (!h->outcome) raise_invalid(who, "the handle is closed");
  return h;
}

int http_request(lua_State* L) {
  auto outcome = start(L, 1, "flare.http.request");
  net::shared_client().wait(outcome->id);
  finish(L, *outcome);
  return 1;
}

int http_submit(lua_State* L) {
  auto outcome = start(L, 1, "flare.http.submit");
  push_udata<Handle>(L, kHandleMeta, Handle{std::move(outcome)});
  return 1;
}

int handle_wait(lua_State* L) {
  Handle* h = check_handle(L, 1, "handle:wait");
  if (!h->outcome->done) net::shared_client().wait(h->outcome->id);
  finish(L, *h->outcome);
  return 1;
}

int handle_done(lua_State* L) {
  Handle* h = check_handle(L, 1, "handle:done");
  lua_pushboolean(L, h->outcome->done);
  return 1;
}

int handle_gc(lua_State* L) {
  auto* h = static_cast<Handle*>(lua_touserdata(L, 1));
  if (h->outcome && !h->outcome->done) net::shared_client().cancel(h->outcome->id);
  h->~Handle();
  return 0;
}

int handle_tostring(lua_State* L) {
  Handle* h = check_handle(L, 1, "handle:__tostring");
  lua_pushstring(L,
                 h->outcome->done ? "flare.http handle (done)" : "flare.http handle (in flight)");
  return 1;
}

int open_http(lua_State* L) {
  static const luaL_Reg handle_methods[] = {
      {"wait", handle_wait},
      {"done", handle_done},
      {"__tostring", handle_tostring},
      {nullptr, nullptr},
  };
  register_class(L, kHandleMeta, handle_methods, handle_gc);

  static const luaL_Reg functions[] = {
      {"request", http_request},
      {"submit", http_submit},
      {nullptr, nullptr},
  };
  push_functions(L, functions);
  return 1;
}

}  // namespace
}  // namespace flare::lua

FLARE_LUA_MODULE(http, flare::lua::open_http);
