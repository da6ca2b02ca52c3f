// flare.emulator: flare's local emulator started inside this process.
//   local em = flare.emulator.start{state_dir=, provision_delay_s=0.5, idle_timeout_s=300,
//                                   faults="", api_key=, port=0, host="127.0.0.1",
//                                   log_requests=false}
//   em:base_url(), em:api_key(), em:account_id(), em:state_dir(), em:stop()
//   tostring(em) names the URL and the key redacted. Collected or closed
//   emulators stop; a temporary state dir is removed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <lua.hpp>
#include <memory>

#include "emulator/server/loaded_emulator.hpp"
#include "fireworks/redact.hpp"
#include "lua_support.hpp"
#include "module.hpp"
#include "runtime/error.hpp"
#include "sandbox_policy.hpp"

using flare::lua::check_udata;
using flare::lua::Options;

namespace {

const char* const kMeta = "flare.emulator.Emulator";
using Handle = std::unique_ptr<flare::emulator::LoadedEmulator>;  // empty once stopped

flare::emulator::LoadedEmulator& check(lua_State* L, const char* who) {
  auto& p = check_udata<Handle>(L, 1, kMeta, who);
  if (!p) flare::lua::raise_invalid(who, "the emulator was stopped");
  return *p;
}

int l_start(lua_State* L) {
  const char* who = "flare.emulator.start";
  Options opts(L, 1, who, false);
  flare::emulator::Options o;
  o.state_dir = opts.string("state_dir", o.state_dir);
  o.host = opts.string("host", o.host);
  o.port = static_cast<int>(opts.integer("port", o.port, 0, 65535));
  o.api_key = opts.string("api_key", o.api_key);
  o.faults = opts.string("faults", o.faults);
  o.provision_delay_s = opts.number("provision_delay_s", o.provision_delay_s, 0);
  o.idle_timeout_s = opts.number("idle_timeout_s", o.idle_timeout_s, 0);
  o.log_requests = opts.boolean("log_requests", o.log_requests);
  opts.finish();
  Handle& mem = flare::lua::push_udata<Handle>(L, kMeta);
  try {
    mem = std::make_unique<flare::emulator::LoadedEmulator>(o);
    flare::sandbox::allow_origin(mem->base_url(), mem->api_key());
  } catch (const flare::Error& e) {
    throw flare::Error(e.code, std::string("flare.emulator.start: ") + e.what());
  }
  return 1;
}

int push_string(lua_State* L, const std::string& s) {
  lua_pushlstring(L, s.data(), s.size());
  return 1;
}

int l_base_url(lua_State* L) {
  return push_string(L, check(L, "emulator:base_url").base_url());
}
int l_api_key(lua_State* L) {
  const auto& em = check(L, "emulator:api_key");
  if (!flare::sandbox::emulator_key_readable()) {  // connections get it in C++ (key_for)
    lua_pushnil(L);
    return 1;
  }
  return push_string(L, em.api_key());
}
int l_account_id(lua_State* L) {
  return push_string(L, check(L, "emulator:account_id").account_id());
}
int l_state_dir(lua_State* L) {
  return push_string(L, check(L, "emulator:state_dir").state_dir());
}

int port_of(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(a).sin_port);
  if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(a).sin6_port);
  return -1;
}

// The server's keep-alive workers only notice a stop when their connection
// closes (or after the keep-alive timeout, 30 s), so this process's own idle
// client connections to the emulator are shut down first.
void shut_client_connections(int server_port) {
  for (int fd = 3; fd < 4096; ++fd) {
    sockaddr_storage local{}, peer{};
    socklen_t ll = sizeof local, pl = sizeof peer;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ll) != 0) continue;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0) continue;
    if (port_of(peer) == server_port && port_of(local) != server_port) shutdown(fd, SHUT_RDWR);
  }
}

void stop(Handle& em) {
  if (!em) return;
  shut_client_connections(em->port());
  em.reset();
}

int l_stop(lua_State* L) {
  stop(check_udata<Handle>(L, 1, kMeta, "emulator:stop"));
  return 0;
}

int l_gc(lua_State* L) {
  auto* p = static_cast<Handle*>(lua_touserdata(L, 1));
  stop(*p);
  p->~unique_ptr();
  return 0;
}

int l_tostring(lua_State* L) {
  auto* p = &check_udata<Handle>(L, 1, kMeta, "emulator:__tostring");
  if (!*p) return push_string(L, "flare.emulator(stopped)");
  return push_string(L, "flare.emulator(" + (*p)->base_url() + ", key " +
                            flare::fireworks::redact_key((*p)->api_key()) + ")");
}

int open_emulator(lua_State* L) {
  static const luaL_Reg methods[] = {
      {"base_url", l_base_url},   {"api_key", l_api_key}, {"account_id", l_account_id},
      {"state_dir", l_state_dir}, {"stop", l_stop},       {"__tostring", l_tostring},
      {nullptr, nullptr}};
  flare::lua::register_class(L, kMeta, methods, l_gc);
  static const luaL_Reg functions[] = {{"start", l_start}, {nullptr, nullptr}};
  flare::lua::push_functions(L, functions);
  return 1;
}

}  // namespace

FLARE_LUA_MODULE(emulator, open_emulator);
