#pragma once
// Lua values <-> JSON, with one set of rules for flare.json and every binding
// that exchanges JSON with Lua.
//
//   null         flare.json.null (a unique light userdata); nil encodes as null
//   integers     |n| <= 2^53 decode to Lua numbers; larger ones decode to LuaJIT
//                int64_t cdata (uint64_t above INT64_MAX) so the whole int64 and
//                uint64 range round-trips exactly (tonumber() gives a number).
//                A Lua number that is integral and inside int64 encodes as an
//                integer; int64_t/uint64_t cdata encode as integers.
//   floats       shortest text that reads back to the same double; NaN and
//                +-inf raise naming the path.
//   arrays       a table whose keys are exactly 1..n
//   objects      a table whose keys are all strings
//   empty {}     encodes as [] (a plain empty table is taken as an empty list);
//                flare.json.object{} marks a table as an object, and
//                flare.json.array{} as an array. Decoded tables carry these
//                marks, so decode -> encode keeps [] and {}.
//   errors       mixed or sparse keys, cycles, nesting deeper than 1000,
//                invalid UTF-8 and unsupported types raise naming the path
//                ($.choices[1].text, Lua indices); malformed JSON text raises
//                naming the byte offset (0-based).
//
// Errors are thrown as std::runtime_error; the host turns them into Lua errors.
#include <cstddef>
#include <cstdint>
#include <lua.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "text/json_parse.hpp"

namespace flare::lua {

inline constexpr int kJsonMaxDepth = 1000;

void push_json(lua_State* L, const nlohmann::json& value);
// `who` names the caller in errors ("conn:request: cannot encode a function at $.x").
nlohmann::json to_json(lua_State* L, int idx, const char* who = "to_json");

void push_json_null(lua_State* L);
bool is_json_null(lua_State* L, int idx);

enum class JsonKind { none, array, object };
// Marks the table at idx (sets the marker metatable).
void set_json_kind(lua_State* L, int idx, JsonKind kind);
// The mark of the value at idx: none for unmarked tables and non-tables.
JsonKind json_kind(lua_State* L, int idx);

// Builds Lua values on the stack from a stream of JSON events. After the last
// event of one top-level value, take_result() leaves it on the stack top.
class LuaJsonBuilder {
 public:
  explicit LuaJsonBuilder(lua_State* L);

  void null();
  void boolean(bool b);
  void integer(std::int64_t n);
  void unsigned_integer(std::uint64_t n);
  void number(double d);
  void string(const char* s, std::size_t n);
  void string(std::string_view s) { string(s.data(), s.size()); }
  // size: a hint (element or member count; 0 when unknown).
  void begin_array(std::size_t size = 0);
  void begin_object(std::size_t size = 0);
  void key(const char* s, std::size_t n);
  void key(std::string_view k) { key(k.data(), k.size()); }
  void end_container();
  // A whole value's events (text::JsonParser's fast path), in one call.
  void value(const text::JsonEvent* events, std::size_t count);
  // The events of a value that value() receives later (text::JsonEvents::prepare).
  void prepare(const text::JsonEvent* events, std::size_t count);

  // Throws if the value is incomplete; replaces the builder's slots with it.
  void take_result();
  // For a sequence of values: throws if the value is incomplete; leaves it on the stack
  // top, above the builder's slots, and makes ready for the next value.
  void take_next();
  int depth() const { return static_cast<int>(frames_.size()); }

 private:
  struct Frame {
    bool is_array;
    int count;
  };
  void begin(bool is_array, std::size_t size);
  void added();
  void push_big_integer(std::int64_t hi, std::uint32_t lo, bool is_unsigned);

  void push_short_string(const char* s, std::size_t n);
  void push_long_string(const char* s, std::size_t n);
  void push_text(const char* s, std::size_t n);  // a string value or key

  lua_State* L_;
  int base_;  // stack slot of the array marker; object marker at base_ + 1; string cache + 2
  // Recently pushed keys and short strings, so that the keys every row repeats are not
  // interned again: slot i holds the bytes of the Lua string at index i + 1 of the cache
  // table (as words, see push_short_string).
  // A small document does not pay for the cache: it starts after kCacheAfter strings.
  static constexpr std::size_t kCacheSlots = 256, kCachedMax = 16, kCacheAfter = 64;
  std::size_t uncached_ = 0;
  struct CachedString {
    std::uint64_t a = 0, b = 0;
    std::uint8_t size = 0xff;  // none
  };
  std::vector<CachedString> cache_;
  // Long strings interned ahead, in the order the values meet them: one string-table
  // lookup after another overlap in the CPU, where building tables between them would
  // wait for each. Prepared string i is the Lua string at stack slot base_ + 3 + i; the
  // slots are made when a value of kInternAheadFrom events or more comes first.
  static constexpr std::size_t kPreparedSlots = 128, kInternAheadFrom = 32;
  bool slots_ = false;
  bool make_slots();
  // The strings' bytes and sizes, as LuaJIT's prefetch (luajit_strings.hpp) takes them.
  std::vector<const char*> prepared_s_;
  std::vector<std::size_t> prepared_n_;
  std::size_t interned_ = 0;  // prepared strings already in their slots
  // Short string values met on the way: not interned ahead (most hit the cache of short
  // strings), but their string-table entries are prefetched with the long ones'.
  std::vector<const char*> short_s_;
  std::vector<std::size_t> short_n_;
  std::vector<std::size_t> prepared_ends_;  // per prepared value, the end of its strings
  std::size_t values_sent_ = 0;             // prepared values built so far
  std::size_t next_prepared_ = 0, prepared_limit_ = 0;  // of the value being built
  // Records the long strings from e on (as many as there are slots left); returns where
  // it stopped. intern_pending() then interns every recorded string into its slot.
  const text::JsonEvent* intern_ahead(const text::JsonEvent* e, const text::JsonEvent* end);
  void intern_pending();
  void forget_prepared();
  std::vector<Frame> frames_;
  bool have_result_ = false;
};

// Raised by LuaJsonBuilder when nesting exceeds kJsonMaxDepth.
struct JsonTooDeep : std::runtime_error {
  JsonTooDeep();
};

// Receives a Lua value as JSON events (see LuaJsonWalker).
class JsonWriter {
 public:
  virtual ~JsonWriter() = default;
  virtual void null() = 0;
  virtual void boolean(bool b) = 0;
  virtual void integer(std::int64_t n) = 0;
  virtual void unsigned_integer(std::uint64_t n) = 0;
  virtual void number(double d) = 0;
  virtual void string(std::string_view s) = 0;
  virtual void begin_array() = 0;
  virtual void end_array() = 0;
  virtual void begin_object() = 0;
  virtual void key(std::string_view k) = 0;
  virtual void end_object() = 0;
};

// Walks a Lua value and reports it to a JsonWriter, applying the rules above.
// `who` prefixes error messages (e.g. "flare.json.encode").
void walk_lua_value(lua_State* L, int idx, JsonWriter& writer, bool sort_keys, const char* who);

}  // namespace flare::lua
