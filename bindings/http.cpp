// flare.http: request{...} -> {status=, headers=, body=, total_s=};
// submit{...} -> handle with :wait() and :done(); flare.wait_all(handles) -> responses.
// All of them run on the process-wide client (one libcurl multi loop), so every
// request in flight progresses while any of them is waited for. Response header
// names are lower-cased; repeated headers are joined with ", ".
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "module.hpp"
#include "net/http_client.hpp"

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

[[noreturn]] void misuse(const char* who, const std::string& what) {
  throw std::runtime_error(std::string(who) + ": " + what);
}

std::string string_field(lua_State* L, const char* who, const char* name) {
  if (lua_type(L, -1) != LUA_TSTRING)
    misuse(who, std::string("option '") + name + "' must be a string, got " + luaL_typename(L, -1));
  std::size_t n = 0;
  const char* s = lua_tolstring(L, -1, &n);
  return std::string(s, n);
}

double seconds_field(lua_State* L, const char* who, const char* name) {
  if (lua_type(L, -1) != LUA_TNUMBER)
    misuse(who, std::string("option '") + name + "' must be a number, got " + luaL_typename(L, -1));
  double v = lua_tonumber(L, -1);
  if (!(v >= 0)) misuse(who, std::string("option '") + name + "' must be >= 0");
  return v;
}

void read_headers(lua_State* L, const char* who, Request& r) {
  if (!lua_istable(L, -1))
    misuse(who, std::string("option 'headers' must be a table, got ") + luaL_typename(L, -1));
  int t = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING)
      misuse(who, std::string("header names must be strings, got ") + luaL_typename(L, -2));
    std::string name = lua_tostring(L, -2);
    int vt = lua_type(L, -1);
    if (vt != LUA_TSTRING && vt != LUA_TNUMBER)
      misuse(who, "header '" + name + "' must be a string, got " + luaL_typename(L, -1));
    std::size_t n = 0;
    lua_pushvalue(L, -1);  // tolstring converts numbers in place; keep the key intact
    const char* v = lua_tolstring(L, -1, &n);
    r.headers.add(std::move(name), std::string(v, n));
    lua_pop(L, 2);
  }
}

Request read_request(lua_State* L, int idx, const char* who) {
  if (!lua_istable(L, idx))
    misuse(who, std::string("expected an options table, got ") + luaL_typename(L, idx));
  Request r;
  bool has_url = false;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING)
      misuse(who, std::string("option names must be strings, got ") + luaL_typename(L, -2));
    const char* key = lua_tostring(L, -2);
    if (std::strcmp(key, "url") == 0) {
      r.url = string_field(L, who, key);
      has_url = true;
    } else if (std::strcmp(key, "method") == 0) {
      r.method = string_field(L, who, key);
      for (auto& c : r.method)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
    } else if (std::strcmp(key, "body") == 0) {
      r.body = string_field(L, who, key);
    } else if (std::strcmp(key, "headers") == 0) {
      read_headers(L, who, r);
    } else if (std::strcmp(key, "timeout_s") == 0) {
      r.timeout_s = seconds_field(L, who, key);
    } else if (std::strcmp(key, "connect_timeout_s") == 0) {
      r.connect_timeout_s = seconds_field(L, who, key);
    } else {
      misuse(who, std::string("unknown option '") + key + "'");
    }
    lua_pop(L, 1);
  }
  if (!has_url) misuse(who, "missing option 'url'");
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
  auto* h = static_cast<Handle*>(luaL_checkudata(L, idx, kHandleMeta));
  if (!h->outcome) misuse(who, "the handle is closed");
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
  void* memory = lua_newuserdata(L, sizeof(Handle));
  new (memory) Handle{std::move(outcome)};
  luaL_getmetatable(L, kHandleMeta);
  lua_setmetatable(L, -2);
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
      {nullptr, nullptr},
  };
  if (luaL_newmetatable(L, kHandleMeta)) {
    lua_newtable(L);
    luaL_register(L, nullptr, handle_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, handle_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, handle_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);

  static const luaL_Reg functions[] = {
      {"request", http_request},
      {"submit", http_submit},
      {nullptr, nullptr},
  };
  lua_newtable(L);
  luaL_register(L, nullptr, functions);
  return 1;
}

}  // namespace
}  // namespace flare::lua

FLARE_LUA_MODULE(http, flare::lua::open_http);
