#include "lua_support.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "runtime/error.hpp"

namespace flare::lua {
namespace {

int absolute(lua_State* L, int idx) {
  return idx < 0 && idx > LUA_REGISTRYINDEX ? lua_gettop(L) + idx + 1 : idx;
}

std::string number_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.14g", v);
  return buf;
}

// "must be >= 0", "must be in [1, 19]"; empty when the bounds are open.
std::string range_text(double v, double min, double max, double open_min, double open_max) {
  if (v >= min && v <= max) return {};
  bool has_min = min > open_min, has_max = max < open_max;
  std::string range;
  if (has_min == has_max) {
    range = "in [" + number_text(min) + ", " + number_text(max) + "]";
  } else if (has_min) {
    range = ">= " + number_text(min);
  } else {
    range = "<= " + number_text(max);
  }
  return "must be " + range + ", got " + number_text(v);
}

constexpr double kIntMin = std::numeric_limits<int>::min();
constexpr double kIntMax = std::numeric_limits<int>::max();

// Checks the number at idx is whole and in [min, max]; returns the problem or "".
std::string integer_problem(double v, long long min, long long max) {
  if (v != std::floor(v) || std::fabs(v) > 9.007199254740992e15)
    return "must be an integer, got " + number_text(v);
  return range_text(v, static_cast<double>(min), static_cast<double>(max), kIntMin, kIntMax);
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

[[noreturn]] void wrong_arg(lua_State* L, int idx, const char* who, const char* name,
                            const char* expected) {
  raise_invalid(
      who, std::string("argument '") + name + "' must be " + expected + ", got " + type_of(L, idx));
}

}  // namespace

void raise_invalid(std::string_view who, std::string_view message) {
  std::string text;
  text.reserve(who.size() + 2 + message.size());
  text.append(who).append(": ").append(message);
  throw flare::Error("invalid_argument", text);
}

std::string did_you_mean(std::string_view name, const std::vector<std::string_view>& candidates) {
  std::vector<std::string_view> sorted = candidates;
  std::sort(sorted.begin(), sorted.end());
  // A shortened name ("timeout" for "timeout_s", "max_token" for "max_tokens") first.
  std::string_view stem = name;
  if (!stem.empty() && stem.back() == 's') stem.remove_suffix(1);
  if (stem.size() >= 4) {
    for (auto c : sorted)
      if (c.substr(0, stem.size()) == stem) return std::string(c);
  }
  std::string_view best;
  size_t best_d = 0;
  for (auto c : sorted) {
    size_t d = edit_distance(name, c);
    if (best.empty() || d < best_d) best = c, best_d = d;
  }
  if (!best.empty() && best_d <= std::max<size_t>(2, name.size() / 3)) return std::string(best);
  return {};
}

std::string type_of(lua_State* L, int idx) {
  if (lua_type(L, idx) == LUA_TUSERDATA && lua_getmetatable(L, idx)) {
    lua_getfield(L, -1, "__name");
    std::string name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "userdata";
    lua_pop(L, 2);
    return name;
  }
  return luaL_typename(L, idx);
}

// --- positional arguments ------------------------------------------------------------------

std::string_view check_string(lua_State* L, int idx, const char* who, const char* name) {
  if (lua_type(L, idx) != LUA_TSTRING) wrong_arg(L, idx, who, name, "a string");
  size_t n = 0;
  const char* s = lua_tolstring(L, idx, &n);
  return {s, n};
}

double check_number(lua_State* L, int idx, const char* who, const char* name) {
  if (lua_type(L, idx) != LUA_TNUMBER) wrong_arg(L, idx, who, name, "a number");
  return lua_tonumber(L, idx);
}

long long check_integer(lua_State* L, int idx, const char* who, const char* name, long long min,
                        long long max) {
  if (lua_type(L, idx) != LUA_TNUMBER) wrong_arg(L, idx, who, name, "an integer");
  double v = lua_tonumber(L, idx);
  std::string problem = integer_problem(v, min, max);
  if (!problem.empty()) raise_invalid(who, std::string("argument '") + name + "' " + problem);
  return static_cast<long long>(v);
}

void check_table(lua_State* L, int idx, const char* who, const char* name) {
  if (!lua_istable(L, idx)) wrong_arg(L, idx, who, name, "a table");
}

void check_function(lua_State* L, int idx, const char* who, const char* name) {
  if (!lua_isfunction(L, idx)) wrong_arg(L, idx, who, name, "a function");
}

std::optional<double> opt_number(lua_State* L, int idx, const char* who, const char* name) {
  if (lua_isnoneornil(L, idx)) return std::nullopt;
  return check_number(L, idx, who, name);
}

std::vector<int> check_int_list(lua_State* L, int idx, const char* who, const char* what_base,
                                int what_index, int min, int max) {
  idx = absolute(L, idx);
  auto name = [&] {
    std::string s = what_base;
    if (what_index > 0) s.append("[").append(std::to_string(what_index)).append("]");
    return s;
  };
  if (!lua_istable(L, idx))
    raise_invalid(who, name() + " must be a list of integers, got " + type_of(L, idx));
  std::vector<int> out;
  int n = static_cast<int>(lua_objlen(L, idx));
  out.resize(static_cast<size_t>(n));
  for (int i = 1; i <= n; ++i) {
    lua_rawgeti(L, idx, i);
    double v = lua_tonumber(L, -1);
    // The common case first: a whole number in range.
    if (lua_type(L, -1) != LUA_TNUMBER || v < min || v > max || v != std::floor(v)) {
      std::string item = name() + "[" + std::to_string(i) + "]";
      if (lua_type(L, -1) != LUA_TNUMBER)
        raise_invalid(who, item + " must be an integer, got " + type_of(L, -1));
      raise_invalid(who, item + " " + integer_problem(v, min, max));
    }
    out[static_cast<size_t>(i - 1)] = static_cast<int>(v);
    lua_pop(L, 1);
  }
  return out;
}

// --- option tables -----------------------------------------------------------------------

Options::Options(lua_State* L, int idx, const char* who, bool required)
    : L_(L), idx_(absolute(L, idx)), who_(who) {
  if (lua_istable(L, idx_)) {
    known_.reserve(16);
    return;
  }
  if (lua_isnoneornil(L, idx_) && !required) {
    idx_ = 0;
    return;
  }
  wrong_arg(L, idx_, who, "opts", "a table");
}

int Options::field(const char* key) {
  known_.push_back(key);
  if (idx_ == 0) {
    lua_pushnil(L_);
    return LUA_TNIL;
  }
  lua_getfield(L_, idx_, key);
  return lua_type(L_, -1);
}

void Options::wrong_type(const char* key, const char* expected) const {
  invalid(key, std::string("must be ") + expected + ", got " + type_of(L_, -1));
}

void Options::invalid(const char* key, std::string_view message) const {
  std::string text = std::string("option '") + key + "' ";
  text.append(message);
  raise_invalid(who_, text);
}

std::optional<std::string> Options::opt_string(const char* key) {
  int t = field(key);
  std::optional<std::string> out;
  if (t == LUA_TSTRING) {
    size_t n = 0;
    const char* s = lua_tolstring(L_, -1, &n);
    out.emplace(s, n);
  } else if (t != LUA_TNIL) {
    wrong_type(key, "a string");
  }
  lua_pop(L_, 1);
  return out;
}

std::string Options::string(const char* key, std::string fallback) {
  auto v = opt_string(key);
  return v ? std::move(*v) : std::move(fallback);
}

void Options::missing(const char* key, std::string_view what) const {
  if (idx_ != 0) {
    lua_pushnil(L_);
    while (lua_next(L_, idx_) != 0) {
      lua_pop(L_, 1);
      if (lua_type(L_, -1) != LUA_TSTRING) continue;
      std::string name = lua_tostring(L_, -1);
      if (did_you_mean(name, {key}) == key)
        raise_invalid(who_, "unknown option '" + name + "' (did you mean '" + key + "'?)");
    }
  }
  invalid(key, "is required (" + std::string(what) + ")");
}

std::string Options::required_string(const char* key) {
  auto v = opt_string(key);
  if (!v) missing(key, "a string");
  return std::move(*v);
}

std::optional<double> Options::opt_number(const char* key, double min, double max) {
  int t = field(key);
  std::optional<double> out;
  if (t == LUA_TNUMBER) {
    double v = lua_tonumber(L_, -1);
    std::string problem = range_text(v, min, max, -HUGE_VAL, HUGE_VAL);
    if (v != v) problem = "must be a number, got nan";
    if (!problem.empty()) invalid(key, problem);
    out = v;
  } else if (t != LUA_TNIL) {
    wrong_type(key, "a number");
  }
  lua_pop(L_, 1);
  return out;
}

double Options::number(const char* key, double fallback, double min, double max) {
  return opt_number(key, min, max).value_or(fallback);
}

std::optional<long long> Options::opt_integer(const char* key, long long min, long long max) {
  int t = field(key);
  std::optional<long long> out;
  if (t == LUA_TNUMBER) {
    double v = lua_tonumber(L_, -1);
    std::string problem = integer_problem(v, min, max);
    if (!problem.empty()) invalid(key, problem);
    out = static_cast<long long>(v);
  } else if (t != LUA_TNIL) {
    wrong_type(key, "an integer");
  }
  lua_pop(L_, 1);
  return out;
}

long long Options::integer(const char* key, long long fallback, long long min, long long max) {
  return opt_integer(key, min, max).value_or(fallback);
}

std::optional<bool> Options::opt_boolean(const char* key) {
  int t = field(key);
  std::optional<bool> out;
  if (t == LUA_TBOOLEAN) {
    out = lua_toboolean(L_, -1) != 0;
  } else if (t != LUA_TNIL) {
    wrong_type(key, "a boolean");
  }
  lua_pop(L_, 1);
  return out;
}

bool Options::boolean(const char* key, bool fallback) {
  return opt_boolean(key).value_or(fallback);
}

std::optional<std::vector<std::string>> Options::strings(const char* key) {
  int t = field(key);
  std::optional<std::vector<std::string>> out;
  if (t == LUA_TSTRING) {
    out.emplace().push_back(lua_tostring(L_, -1));
  } else if (t == LUA_TTABLE) {
    out.emplace();
    int n = static_cast<int>(lua_objlen(L_, -1));
    for (int i = 1; i <= n; ++i) {
      lua_rawgeti(L_, -1, i);
      if (lua_type(L_, -1) != LUA_TSTRING) {
        std::string item = std::string(key) + "[" + std::to_string(i) + "]";
        wrong_type(item.c_str(), "a string");
      }
      out->push_back(lua_tostring(L_, -1));
      lua_pop(L_, 1);
    }
  } else if (t != LUA_TNIL) {
    wrong_type(key, "a string or a list of strings");
  }
  lua_pop(L_, 1);
  return out;
}

std::optional<std::vector<std::pair<std::string, std::string>>> Options::string_map(
    const char* key) {
  int t = field(key);
  std::optional<std::vector<std::pair<std::string, std::string>>> out;
  if (t == LUA_TTABLE) {
    out.emplace();
    int map = lua_gettop(L_);
    lua_pushnil(L_);
    while (lua_next(L_, map) != 0) {
      if (lua_type(L_, -2) != LUA_TSTRING)
        invalid(key, "must map names to strings, got a " + type_of(L_, -2) + " name");
      int vt = lua_type(L_, -1);
      if (vt != LUA_TSTRING && vt != LUA_TNUMBER)
        invalid(key, std::string("must map names to strings, got ") + type_of(L_, -1) + " for '" +
                         lua_tostring(L_, -2) + "'");
      std::string name = lua_tostring(L_, -2);
      size_t n = 0;
      lua_pushvalue(L_, -1);  // tolstring converts numbers in place; keep the key intact
      const char* s = lua_tolstring(L_, -1, &n);
      out->emplace_back(std::move(name), std::string(s, n));
      lua_pop(L_, 2);
    }
  } else if (t != LUA_TNIL) {
    wrong_type(key, "a table of name = value");
  }
  lua_pop(L_, 1);
  return out;
}

bool Options::push_typed(const char* key, int type, const char* expected) {
  int t = field(key);
  if (t == type) return true;
  if (t != LUA_TNIL) wrong_type(key, expected);
  lua_pop(L_, 1);
  return false;
}

bool Options::push_table(const char* key) {
  return push_typed(key, LUA_TTABLE, "a table");
}

bool Options::push_function(const char* key) {
  return push_typed(key, LUA_TFUNCTION, "a function");
}

void Options::push_any(const char* key) {
  field(key);
}

void Options::finish() {
  if (idx_ == 0) return;
  lua_pushnil(L_);
  while (lua_next(L_, idx_) != 0) {
    lua_pop(L_, 1);
    if (lua_type(L_, -1) != LUA_TSTRING) {
      std::string what = type_of(L_, -1);
      if (lua_type(L_, -1) == LUA_TNUMBER)
        what.append(" ").append(number_text(lua_tonumber(L_, -1)));
      raise_invalid(who_, "option names must be strings, got " + what);
    }
    const char* key = lua_tostring(L_, -1);
    bool known = false;
    for (const char* k : known_) {
      if (std::strcmp(k, key) == 0) {
        known = true;
        break;
      }
    }
    if (known) continue;
    std::vector<std::string_view> names(known_.begin(), known_.end());
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    std::string hint = did_you_mean(key, names);
    std::string message = std::string("unknown option '") + key + "'";
    if (!hint.empty()) {
      message += " (did you mean '" + hint + "'?)";
    } else {
      message += " (known:";
      for (size_t i = 0; i < names.size(); ++i) message.append(i ? ", " : " ").append(names[i]);
      message += ")";
    }
    raise_invalid(who_, message);
  }
}

// --- userdata ----------------------------------------------------------------------------

void wrong_udata(lua_State* L, int idx, const char* meta, const char* who, const char* name) {
  wrong_arg(L, idx, who, name, (std::string("a ") + meta).c_str());
}

void register_class(lua_State* L, const char* meta, const luaL_Reg* methods, lua_CFunction gc) {
  luaL_newmetatable(L, meta);
  lua_pushstring(L, meta);
  lua_setfield(L, -2, "__name");
  lua_newtable(L);
  for (const luaL_Reg* m = methods; m->name; ++m) {
    bool meta_method = m->name[0] == '_' && m->name[1] == '_';
    lua_pushcfunction(L, m->func);
    lua_setfield(L, meta_method ? -3 : -2, m->name);
  }
  lua_setfield(L, -2, "__index");
  if (gc) {
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
}

void push_functions(lua_State* L, const luaL_Reg* functions) {
  int n = 0;
  for (const luaL_Reg* f = functions; f->name; ++f) ++n;
  lua_createtable(L, 0, n);
  for (const luaL_Reg* f = functions; f->name; ++f) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, -2, f->name);
  }
}

void push_strings(lua_State* L, const std::vector<std::string>& items) {
  lua_createtable(L, static_cast<int>(items.size()), 0);
  for (size_t i = 0; i < items.size(); i++) {
    lua_pushlstring(L, items[i].data(), items[i].size());
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
}

}  // namespace flare::lua
