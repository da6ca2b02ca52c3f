#pragma once
// The C++ exception -> Lua error boundary (LuaJIT's C function wrapper), and
// helpers to raise and describe flare's structured errors.
#include <lua.hpp>
#include <string>

#include "runtime/error.hpp"

namespace flare::lua {

// Installs the wrapper so that any C function called from Lua may throw.
void install_error_boundary(lua_State* L);

// Pushes the error table {code, message, status, retryable, request_id} with a
// __tostring metamethod.
void push_error_table(lua_State* L, const flare::Error& e);

// A one-line description of the error value at idx (string, error table, other).
std::string describe_error(lua_State* L, int idx);

// Returns the error code of an error table at idx, or "" for other values.
std::string error_code(lua_State* L, int idx);

}  // namespace flare::lua
