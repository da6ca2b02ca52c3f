#include "error_boundary.hpp"

#include <exception>
#include <optional>

namespace flare::lua {
namespace {

const char* const kErrorMeta = "flare.error";

int error_tostring(lua_State* L) {
  lua_pushstring(L, describe_error(L, 1).c_str());
  return 1;
}

// Never raise from inside a catch block: the handler's exception object must be
// released first. So copy what is needed out, leave the block, then lua_error.
int wrap_exceptions(lua_State* L, lua_CFunction f) {
  std::optional<flare::Error> structured;
  std::string message;
  try {
    return f(L);
  } catch (const flare::Error& e) {
    structured = e;
  } catch (const std::exception& e) {
    message = e.what();
  }
  if (structured) {
    push_error_table(L, *structured);
  } else {
    lua_pushlstring(L, message.data(), message.size());
  }
  return lua_error(L);
}

}  // namespace

void install_error_boundary(lua_State* L) {
  lua_pushlightuserdata(L, reinterpret_cast<void*>(wrap_exceptions));
  luaJIT_setmode(L, -1, LUAJIT_MODE_WRAPCFUNC | LUAJIT_MODE_ON);
  lua_pop(L, 1);
}

void push_error_table(lua_State* L, const flare::Error& e) {
  lua_createtable(L, 0, 5);
  lua_pushstring(L, e.code.c_str());
  lua_setfield(L, -2, "code");
  lua_pushstring(L, e.what());
  lua_setfield(L, -2, "message");
  if (e.status != 0) {
    lua_pushinteger(L, e.status);
    lua_setfield(L, -2, "status");
  }
  lua_pushboolean(L, e.retryable);
  lua_setfield(L, -2, "retryable");
  for (const auto& [name, value] : e.fields) {
    lua_pushlstring(L, value.data(), value.size());
    lua_setfield(L, -2, name.c_str());
  }
  if (!e.request_id.empty()) {
    lua_pushstring(L, e.request_id.c_str());
    lua_setfield(L, -2, "request_id");
  }
  if (luaL_newmetatable(L, kErrorMeta)) {
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_setmetatable(L, -2);
}

std::string describe_error(lua_State* L, int idx) {
  idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
  if (lua_type(L, idx) == LUA_TSTRING || lua_type(L, idx) == LUA_TNUMBER) {
    return lua_tostring(L, idx);
  }
  if (lua_istable(L, idx)) {
    std::string out;
    lua_getfield(L, idx, "code");
    if (lua_isstring(L, -1)) out = lua_tostring(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, idx, "message");
    if (lua_isstring(L, -1)) {
      std::string msg = lua_tostring(L, -1);
      if (out.empty() || msg.rfind(out, 0) == 0) {
        out = msg;
      } else {
        out += ": " + msg;
      }
    }
    lua_pop(L, 1);
    lua_getfield(L, idx, "status");
    if (lua_isnumber(L, -1)) out += " (HTTP " + std::to_string(lua_tointeger(L, -1)) + ")";
    lua_pop(L, 1);
    if (!out.empty()) return out;
  }
  if (luaL_callmeta(L, idx, "__tostring")) {
    std::string s = lua_isstring(L, -1) ? lua_tostring(L, -1) : "(error object)";
    lua_pop(L, 1);
    return s;
  }
  if (lua_isnil(L, idx)) return "nil";
  return std::string("(error object is a ") + luaL_typename(L, idx) + " value)";
}

std::string error_code(lua_State* L, int idx) {
  if (!lua_istable(L, idx)) return {};
  lua_getfield(L, idx, "code");
  std::string code = lua_isstring(L, -1) ? lua_tostring(L, -1) : "";
  lua_pop(L, 1);
  return code;
}

}  // namespace flare::lua
