#include "json_convert.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "luajit_strings.hpp"
#include "runtime/error.hpp"
#include "text/escape.hpp"
#include "text/utf8.hpp"

namespace flare::lua {
namespace {

const char kNullTag = 0;
const char* const kArrayMeta = "flare.json.array";
const char* const kObjectMeta = "flare.json.object";
const char* const kBigIntegerHelpers = "flare.json.int64";
constexpr int kLuaCData = 10;  // lua_type() of LuaJIT cdata
constexpr double kTwo53 = 9007199254740992.0;
constexpr double kTwo63 = 9223372036854775808.0;

void push_marker(lua_State* L, const char* name) {
  lua_getfield(L, LUA_REGISTRYINDEX, name);
  if (!lua_isnil(L, -1)) return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 1);
  lua_pushstring(L, name == kArrayMeta ? "array" : "object");
  lua_setfield(L, -2, "__jsontype");
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, name);
}

// Two small Lua functions around LuaJIT's FFI: build int64_t/uint64_t cdata from
// 32-bit halves, and print such cdata as decimal digits (nil for other values).
void push_big_integer_helper(lua_State* L, int which) {
  lua_getfield(L, LUA_REGISTRYINDEX, kBigIntegerHelpers);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    static const char code[] = R"(
      local ffi = require("ffi")
      local i64, u64 = ffi.typeof("int64_t"), ffi.typeof("uint64_t")
      local function make(hi, lo, is_unsigned)
        if is_unsigned then return u64(hi) * 4294967296ULL + lo end
        return i64(hi) * 4294967296LL + lo
      end
      local function digits(x)
        if ffi.istype(i64, x) or ffi.istype(u64, x) then
          return (tostring(x):gsub("U?LL$", ""))
        end
        return nil
      end
      return {make, digits}
    )";
    if (luaL_loadbuffer(L, code, sizeof code - 1, "=flare.json") != 0) lua_error(L);
    lua_call(L, 0, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, kBigIntegerHelpers);
  }
  lua_rawgeti(L, -1, which);
  lua_remove(L, -2);
}

std::string format_path(const std::vector<std::pair<long long, std::string_view>>& path) {
  std::string out = "$";
  for (const auto& [index, key] : path) {
    if (index > 0) {
      out += "[" + std::to_string(index) + "]";
      continue;
    }
    bool plain = !key.empty() && !std::isdigit(static_cast<unsigned char>(key[0]));
    for (char c : key)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') plain = false;
    if (plain) {
      out += "." + std::string(key);
    } else {
      std::string quoted;
      for (char c : key) {
        if (c == '"' || c == '\\') quoted += '\\';
        quoted += c;
      }
      out += "[\"" + text::printable(quoted) + "\"]";
    }
  }
  return out;
}

class Walker {
 public:
  Walker(lua_State* L, JsonWriter& w, bool sort_keys, const char* who)
      : L_(L), w_(w), sort_keys_(sort_keys), who_(who) {}

  void value(int idx) {
    switch (lua_type(L_, idx)) {
      case LUA_TNIL:
        w_.null();
        return;
      case LUA_TBOOLEAN:
        w_.boolean(lua_toboolean(L_, idx) != 0);
        return;
      case LUA_TNUMBER:
        number(lua_tonumber(L_, idx));
        return;
      case LUA_TSTRING: {
        std::size_t n = 0;
        const char* s = lua_tolstring(L_, idx, &n);
        std::string_view text(s, n);
        check_utf8(text, "string");
        w_.string(text);
        return;
      }
      case LUA_TTABLE:
        table(idx);
        return;
      case LUA_TLIGHTUSERDATA:
        if (is_json_null(L_, idx)) {
          w_.null();
          return;
        }
        break;
      case kLuaCData:
        if (big_integer(idx)) return;
        break;
      default:
        break;
    }
    fail(std::string("cannot encode a ") + lua_typename(L_, lua_type(L_, idx)));
  }

 private:
  [[noreturn]] void fail(const std::string& what) {
    // A misuse of the caller's argument, raised as raise_invalid does.
    throw flare::Error("invalid_argument",
                       std::string(who_) + ": " + what + " at " + format_path(path_));
  }

  void check_utf8(std::string_view s, const char* what) {
    auto bad = text::invalid_utf8_offset(s);
    if (bad != std::string_view::npos)
      fail(std::string("invalid UTF-8 in ") + what + " (byte " + std::to_string(bad) + ")");
  }

  void number(double d) {
    if (std::isnan(d)) fail("cannot encode NaN");
    if (std::isinf(d)) fail(d > 0 ? "cannot encode inf" : "cannot encode -inf");
    if (d == std::trunc(d) && d >= -kTwo63 && d < kTwo63) {
      w_.integer(static_cast<std::int64_t>(d));
    } else {
      w_.number(d);
    }
  }

  bool big_integer(int idx) {
    push_big_integer_helper(L_, 2);
    lua_pushvalue(L_, idx);
    lua_call(L_, 1, 1);
    if (lua_isnil(L_, -1)) {
      lua_pop(L_, 1);
      return false;
    }
    const char* digits = lua_tostring(L_, -1);
    if (digits[0] == '-') {
      w_.integer(std::strtoll(digits, nullptr, 10));
    } else {
      w_.unsigned_integer(std::strtoull(digits, nullptr, 10));
    }
    lua_pop(L_, 1);
    return true;
  }

  void table(int idx) {
    const void* self = lua_topointer(L_, idx);
    if (std::find(open_.begin(), open_.end(), self) != open_.end())
      fail("cannot encode a table that contains itself (cycle)");
    if (static_cast<int>(open_.size()) >= kJsonMaxDepth)
      fail("nesting deeper than " + std::to_string(kJsonMaxDepth));
    if (!lua_checkstack(L_, 8)) fail("Lua stack exhausted");
    open_.push_back(self);

    JsonKind kind = json_kind(L_, idx);
    std::size_t keys = 0;
    bool all_positive_integers = true;
    bool all_strings = true;
    double max_index = 0;
    lua_pushnil(L_);
    while (lua_next(L_, idx) != 0) {
      lua_pop(L_, 1);
      ++keys;
      int t = lua_type(L_, -1);
      if (t == LUA_TNUMBER) {
        double k = lua_tonumber(L_, -1);
        all_strings = false;
        if (k >= 1 && k == std::trunc(k)) {
          max_index = std::max(max_index, k);
        } else {
          all_positive_integers = false;
        }
      } else {
        all_positive_integers = false;
        if (t != LUA_TSTRING) all_strings = false;
      }
    }
    bool is_sequence = all_positive_integers && max_index == static_cast<double>(keys);

    if (kind == JsonKind::object) {
      object(idx, true);
    } else if (kind == JsonKind::array || keys == 0 || is_sequence) {
      if (!is_sequence && keys != 0) fail("table marked as an array has keys other than 1..n");
      array(idx, keys);
    } else if (all_strings) {
      object(idx, false);
    } else if (all_positive_integers) {
      fail("cannot encode a sparse array (keys are not 1..n)");
    } else {
      fail("cannot encode a table with mixed or non-string keys");
    }
    open_.pop_back();
  }

  void array(int idx, std::size_t n) {
    w_.begin_array();
    for (std::size_t i = 1; i <= n; ++i) {
      path_.emplace_back(static_cast<long long>(i), std::string_view());
      lua_rawgeti(L_, idx, static_cast<int>(i));
      value(lua_gettop(L_));
      lua_pop(L_, 1);
      path_.pop_back();
    }
    w_.end_array();
  }

  // Keys of a marked object may also be numbers (written as their JSON text).
  void object(int idx, bool numbers_allowed) {
    w_.begin_object();
    if (sort_keys_) {
      std::vector<std::string> keys;
      lua_pushnil(L_);
      while (lua_next(L_, idx) != 0) {
        lua_pop(L_, 1);
        keys.push_back(key_text(numbers_allowed));
      }
      std::sort(keys.begin(), keys.end());
      for (const auto& k : keys) {
        lua_pushlstring(L_, k.data(), k.size());
        lua_rawget(L_, idx);
        if (lua_isnil(L_, -1)) {
          // A number key: look it up by its numeric value.
          lua_pop(L_, 1);
          lua_pushnumber(L_, std::strtod(k.c_str(), nullptr));
          lua_rawget(L_, idx);
        }
        member(k);
        lua_pop(L_, 1);
      }
    } else {
      lua_pushnil(L_);
      while (lua_next(L_, idx) != 0) {
        if (lua_type(L_, -2) == LUA_TSTRING) {
          std::size_t n = 0;
          const char* s = lua_tolstring(L_, -2, &n);
          member(std::string_view(s, n));
        } else {
          member(key_text_at(-2, numbers_allowed));
        }
        lua_pop(L_, 1);
      }
    }
    w_.end_object();
  }

  void member(std::string_view key) {
    path_.emplace_back(0, key);
    check_utf8(key, "key");
    w_.key(key);
    value(lua_gettop(L_));
    path_.pop_back();
  }

  std::string key_text(bool numbers_allowed) { return key_text_at(-1, numbers_allowed); }

  std::string key_text_at(int at, bool numbers_allowed) {
    int t = lua_type(L_, at);
    if (t == LUA_TSTRING) {
      std::size_t n = 0;
      const char* s = lua_tolstring(L_, at, &n);
      return std::string(s, n);
    }
    if (t == LUA_TNUMBER && numbers_allowed) {
      double d = lua_tonumber(L_, at);
      if (d == std::trunc(d) && std::fabs(d) < kTwo53)
        return std::to_string(static_cast<long long>(d));
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.17g", d);
      return buf;
    }
    fail(std::string("cannot encode an object key of type ") + lua_typename(L_, t));
  }

  lua_State* L_;
  JsonWriter& w_;
  bool sort_keys_;
  const char* who_;
  std::vector<const void*> open_;
  std::vector<std::pair<long long, std::string_view>> path_;  // index > 0, or key
};

void push_dom(LuaJsonBuilder& b, const nlohmann::json& j) {
  using t = nlohmann::json::value_t;
  switch (j.type()) {
    case t::null:
    case t::discarded:
      b.null();
      break;
    case t::boolean:
      b.boolean(j.get<bool>());
      break;
    case t::number_integer:
      b.integer(j.get<std::int64_t>());
      break;
    case t::number_unsigned:
      b.unsigned_integer(j.get<std::uint64_t>());
      break;
    case t::number_float:
      b.number(j.get<double>());
      break;
    case t::string: {
      const auto& s = j.get_ref<const std::string&>();
      b.string(s.data(), s.size());
      break;
    }
    case t::array:
      b.begin_array();
      for (const auto& item : j) push_dom(b, item);
      b.end_container();
      break;
    case t::object:
      b.begin_object();
      for (const auto& [k, v] : j.items()) {
        b.key(k.data(), k.size());
        push_dom(b, v);
      }
      b.end_container();
      break;
    case t::binary:
      throw std::runtime_error("push_json: binary values have no Lua form");
  }
}

class DomWriter : public JsonWriter {
 public:
  nlohmann::json result;

  void null() override { put(nullptr); }
  void boolean(bool b) override { put(b); }
  void integer(std::int64_t n) override { put(n); }
  void unsigned_integer(std::uint64_t n) override { put(n); }
  void number(double d) override { put(d); }
  void string(std::string_view s) override { put(std::string(s)); }
  void begin_array() override { open(nlohmann::json::array()); }
  void end_array() override { stack_.pop_back(); }
  void begin_object() override { open(nlohmann::json::object()); }
  void key(std::string_view k) override { key_.assign(k); }
  void end_object() override { stack_.pop_back(); }

 private:
  nlohmann::json* put(nlohmann::json v) {
    if (stack_.empty()) {
      result = std::move(v);
      return &result;
    }
    nlohmann::json& parent = *stack_.back();
    if (parent.is_array()) {
      parent.push_back(std::move(v));
      return &parent.back();
    }
    return &(parent[key_] = std::move(v));
  }
  void open(nlohmann::json v) { stack_.push_back(put(std::move(v))); }

  std::vector<nlohmann::json*> stack_;
  std::string key_;
};

}  // namespace

JsonTooDeep::JsonTooDeep()
    : std::runtime_error("nesting deeper than " + std::to_string(kJsonMaxDepth)) {}

void push_json_null(lua_State* L) {
  lua_pushlightuserdata(L, const_cast<char*>(&kNullTag));
}

bool is_json_null(lua_State* L, int idx) {
  return lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == &kNullTag;
}

void set_json_kind(lua_State* L, int idx, JsonKind kind) {
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  if (kind == JsonKind::none) {
    lua_pushnil(L);
  } else {
    push_marker(L, kind == JsonKind::array ? kArrayMeta : kObjectMeta);
  }
  lua_setmetatable(L, idx);
}

JsonKind json_kind(lua_State* L, int idx) {
  if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx)) return JsonKind::none;
  push_marker(L, kArrayMeta);
  bool is_array = lua_rawequal(L, -1, -2) != 0;
  lua_pop(L, 1);
  push_marker(L, kObjectMeta);
  bool is_object = lua_rawequal(L, -1, -2) != 0;
  lua_pop(L, 2);
  return is_array ? JsonKind::array : is_object ? JsonKind::object : JsonKind::none;
}

LuaJsonBuilder::LuaJsonBuilder(lua_State* L) : L_(L) {
  if (!lua_checkstack(L, 16)) throw std::runtime_error("Lua stack exhausted");
  base_ = lua_gettop(L) + 1;
  push_marker(L, kArrayMeta);
  push_marker(L, kObjectMeta);
  lua_pushnil(L);  // the string cache, made once a value has many short strings
}

// The slots go right above the builder's three, so only before the first value is built.
bool LuaJsonBuilder::make_slots() {
  if (slots_) return true;
  if (lua_gettop(L_) != base_ + 2 || !lua_checkstack(L_, static_cast<int>(kPreparedSlots) + 16))
    return false;
  lua_settop(L_, base_ + 2 + static_cast<int>(kPreparedSlots));
  short_s_.reserve(kPreparedSlots);
  short_n_.reserve(kPreparedSlots);
  prepared_s_.reserve(kPreparedSlots);
  prepared_n_.reserve(kPreparedSlots);
  slots_ = true;
  return true;
}

void LuaJsonBuilder::push_long_string(const char* s, std::size_t n) {
  if (next_prepared_ < prepared_limit_ && prepared_s_[next_prepared_] == s &&
      prepared_n_[next_prepared_] == n) {
    lua_pushvalue(L_, base_ + 3 + static_cast<int>(next_prepared_++));
  } else {
    lua_pushlstring(L_, s, n);
  }
}

void LuaJsonBuilder::push_short_string(const char* s, std::size_t n) {
  if (cache_.empty()) {
    if (++uncached_ < kCacheAfter) {
      lua_pushlstring(L_, s, n);
      return;
    }
    lua_createtable(L_, static_cast<int>(kCacheSlots), 0);
    lua_replace(L_, base_ + 2);
    cache_.resize(kCacheSlots);
  }
  // The n bytes (1..16) as two words and n, which tell them apart: loads that cover
  // the bytes from both ends, never past them.
  auto load8 = [](const char* p) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    return w;
  };
  auto load4 = [](const char* p) {
    std::uint32_t w;
    std::memcpy(&w, p, 4);
    return std::uint64_t{w};
  };
  std::uint64_t a, b = 0;
  if (n >= 8) {
    a = load8(s);
    b = load8(s + n - 8);
  } else if (n >= 4) {
    a = load4(s) | load4(s + n - 4) << 32;
  } else {
    auto byte = [&](std::size_t i) { return std::uint64_t{static_cast<unsigned char>(s[i])}; };
    a = byte(0) | byte(n / 2) << 8 | byte(n - 1) << 16;
  }
  std::size_t slot = static_cast<std::size_t>(
                         ((a ^ (b * 0xff51afd7ed558ccdULL) ^ n) * 0x9e3779b97f4a7c15ULL) >> 56) %
                     kCacheSlots;
  CachedString& c = cache_[slot];
  if (c.size == n && c.a == a && c.b == b) {
    lua_rawgeti(L_, base_ + 2, static_cast<int>(slot) + 1);
    return;
  }
  lua_pushlstring(L_, s, n);
  lua_pushvalue(L_, -1);
  lua_rawseti(L_, base_ + 2, static_cast<int>(slot) + 1);
  c.size = static_cast<std::uint8_t>(n);
  c.a = a;
  c.b = b;
}

void LuaJsonBuilder::added() {
  if (frames_.empty()) {
    have_result_ = true;
    return;
  }
  Frame& f = frames_.back();
  if (f.is_array) {
    lua_rawseti(L_, -2, ++f.count);
  } else {
    lua_rawset(L_, -3);
  }
}

void LuaJsonBuilder::null() {
  push_json_null(L_);
  added();
}

void LuaJsonBuilder::boolean(bool b) {
  lua_pushboolean(L_, b);
  added();
}

void LuaJsonBuilder::integer(std::int64_t n) {
  if (n >= -static_cast<std::int64_t>(kTwo53) && n <= static_cast<std::int64_t>(kTwo53)) {
    lua_pushnumber(L_, static_cast<double>(n));
  } else {
    push_big_integer(n >> 32, static_cast<std::uint32_t>(n & 0xffffffff), false);
  }
  added();
}

void LuaJsonBuilder::unsigned_integer(std::uint64_t n) {
  if (n <= static_cast<std::uint64_t>(INT64_MAX)) {
    integer(static_cast<std::int64_t>(n));
    return;
  }
  push_big_integer(static_cast<std::int64_t>(n >> 32), static_cast<std::uint32_t>(n & 0xffffffff),
                   true);
  added();
}

void LuaJsonBuilder::push_big_integer(std::int64_t hi, std::uint32_t lo, bool is_unsigned) {
  push_big_integer_helper(L_, 1);
  lua_pushnumber(L_, static_cast<double>(hi));
  lua_pushnumber(L_, static_cast<double>(lo));
  lua_pushboolean(L_, is_unsigned);
  lua_call(L_, 3, 1);
}

void LuaJsonBuilder::number(double d) {
  lua_pushnumber(L_, d);
  added();
}

void LuaJsonBuilder::push_text(const char* s, std::size_t n) {
  if (n > kCachedMax) {
    push_long_string(s, n);
  } else if (n > 0) {
    push_short_string(s, n);
  } else {
    lua_pushlstring(L_, "", 0);
  }
}

void LuaJsonBuilder::string(const char* s, std::size_t n) {
  push_text(s, n);
  added();
}

void LuaJsonBuilder::begin(bool is_array, std::size_t size) {
  if (static_cast<int>(frames_.size()) >= kJsonMaxDepth) throw JsonTooDeep();
  if (!lua_checkstack(L_, 4)) throw std::runtime_error("Lua stack exhausted");
  int n = static_cast<int>(std::min<std::size_t>(size, 1 << 20));
  lua_createtable(L_, is_array ? n : 0, is_array ? 0 : n);
  lua_pushvalue(L_, is_array ? base_ : base_ + 1);
  lua_setmetatable(L_, -2);
  frames_.push_back({is_array, 0});
}

void LuaJsonBuilder::begin_array(std::size_t size) {
  begin(true, size);
}
void LuaJsonBuilder::begin_object(std::size_t size) {
  begin(false, size);
}

void LuaJsonBuilder::key(const char* s, std::size_t n) {
  push_text(s, n);
}

void LuaJsonBuilder::end_container() {
  frames_.pop_back();
  added();
}

const text::JsonEvent* LuaJsonBuilder::intern_ahead(const text::JsonEvent* e,
                                                    const text::JsonEvent* end) {
  for (; e != end; ++e) {
    if ((e->kind != FLARE_JSON_STRING && e->kind != FLARE_JSON_KEY) || e->size <= kCachedMax) {
      if (e->kind == FLARE_JSON_STRING && e->size > 0 && short_s_.size() < kPreparedSlots) {
        short_s_.push_back(e->v.s);
        short_n_.push_back(e->size);
      }
      continue;
    }
    if (prepared_s_.size() == kPreparedSlots) break;
    prepared_s_.push_back(e->v.s);
    prepared_n_.push_back(e->size);
  }
  return e;
}

void LuaJsonBuilder::intern_pending() {
  std::size_t n = prepared_s_.size();
  prefetch_strings(L_, short_s_.data(), short_n_.data(), short_s_.size());
  short_s_.clear();
  short_n_.clear();
  if (interned_ == n) return;
  prefetch_strings(L_, prepared_s_.data() + interned_, prepared_n_.data() + interned_,
                   n - interned_);
  for (; interned_ < n; ++interned_) {
    lua_pushlstring(L_, prepared_s_[interned_], prepared_n_[interned_]);
    lua_replace(L_, base_ + 3 + static_cast<int>(interned_));
  }
}

void LuaJsonBuilder::forget_prepared() {
  prepared_s_.clear();
  prepared_n_.clear();
  prepared_ends_.clear();
  interned_ = values_sent_ = next_prepared_ = prepared_limit_ = 0;
}

void LuaJsonBuilder::prepare(const text::JsonEvent* events, std::size_t count) {
  if (make_slots()) intern_ahead(events, events + count);
  prepared_ends_.push_back(prepared_s_.size());
}

void LuaJsonBuilder::value(const text::JsonEvent* events, std::size_t count) {
  if (values_sent_ < prepared_ends_.size()) {
    intern_pending();
    prepared_limit_ = prepared_ends_[values_sent_++];
    text::send_json_events(events, count, *this);
    next_prepared_ = prepared_limit_;
    if (values_sent_ == prepared_ends_.size()) forget_prepared();
    return;
  }
  // A value nobody prepared: its long strings are interned ahead as many at a time as
  // there are slots.
  forget_prepared();
  if (count < kInternAheadFrom || !make_slots()) {
    text::send_json_events(events, count, *this);
    return;
  }
  const text::JsonEvent* end = events + count;
  for (const text::JsonEvent* e = events; e != end;) {
    const text::JsonEvent* covered = intern_ahead(e, end);
    intern_pending();
    prepared_limit_ = prepared_s_.size();
    text::send_json_events(e, static_cast<std::size_t>(covered - e), *this);
    forget_prepared();
    e = covered;
  }
}

void LuaJsonBuilder::take_result() {
  if (!have_result_ || !frames_.empty()) throw std::runtime_error("incomplete JSON value");
  lua_replace(L_, base_);
  lua_settop(L_, base_);
}

void LuaJsonBuilder::take_next() {
  if (!have_result_ || !frames_.empty()) throw std::runtime_error("incomplete JSON value");
  have_result_ = false;
}

void push_json(lua_State* L, const nlohmann::json& value) {
  LuaJsonBuilder builder(L);
  push_dom(builder, value);
  builder.take_result();
}

nlohmann::json to_json(lua_State* L, int idx, const char* who) {
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  DomWriter writer;
  walk_lua_value(L, idx, writer, false, who);
  return std::move(writer.result);
}

void walk_lua_value(lua_State* L, int idx, JsonWriter& writer, bool sort_keys, const char* who) {
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  Walker(L, writer, sort_keys, who).value(idx);
}

}  // namespace flare::lua
