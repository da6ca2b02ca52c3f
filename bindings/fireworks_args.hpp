#pragma once
// Reading typed options out of a Lua table for the fireworks bindings; a wrong
// type raises flare::Error "invalid_argument" naming the option.
#include <lua.hpp>
#include <optional>
#include <string>
#include <vector>

namespace flare::lua::fwargs {

std::optional<std::string> opt_string(lua_State* L, int t, const char* field, const char* who);
std::optional<double> opt_number(lua_State* L, int t, const char* field, const char* who);
std::optional<long long> opt_integer(lua_State* L, int t, const char* field, const char* who);
std::optional<bool> opt_bool(lua_State* L, int t, const char* field, const char* who);
// A list of strings, or one string; nullopt when absent.
std::optional<std::vector<std::string>> opt_strings(lua_State* L, int t, const char* field,
                                                    const char* who);
// A list of integers (token ids) at stack index idx; `what` names it in errors.
std::vector<int> int_list(lua_State* L, int idx, const std::string& what);

}  // namespace flare::lua::fwargs
