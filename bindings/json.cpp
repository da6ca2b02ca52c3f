// flare.json: encode(value, {pretty=, sort_keys=}), decode(text), null,
// array(t), object(t), decode_lines(text, {source=}) for JSON lines, parser(). The rules are in
// json_convert.hpp; parsing is text/json_parse.hpp (simdjson, exact errors).
#include <charconv>
#include <cstring>
#include <stdexcept>
#include <string>

#include "json_convert.hpp"
#include "lua_support.hpp"
#include "luajit_strings.hpp"
#include "module.hpp"
#include "text/escape.hpp"
#include "text/json_parse.hpp"

namespace flare::lua {
namespace {

// JSON events (text/json_parse.hpp) straight into Lua tables.
struct EventsToLua : text::JsonEvents {
  explicit EventsToLua(LuaJsonBuilder& builder) : b(builder) {}
  LuaJsonBuilder& b;
  void null() override { b.null(); }
  void boolean(bool v) override { b.boolean(v); }
  void integer(std::int64_t v) override { b.integer(v); }
  void unsigned_integer(std::uint64_t v) override { b.unsigned_integer(v); }
  void number(double v) override { b.number(v); }
  void string(std::string_view s) override { b.string(s.data(), s.size()); }
  void begin_array(std::size_t n) override { b.begin_array(n); }
  void begin_object(std::size_t n) override { b.begin_object(n); }
  void key(std::string_view k) override { b.key(k.data(), k.size()); }
  void end_container() override { b.end_container(); }
  void value(const text::JsonEvent* events, std::size_t count) override { b.value(events, count); }
  void prepare(const text::JsonEvent* events, std::size_t count) override {
    b.prepare(events, count);
  }
};

std::string too_deep(std::string_view text, std::size_t base) {
  return "nesting deeper than " + std::to_string(kJsonMaxDepth) + " at byte offset " +
         std::to_string(base + text::json_too_deep_offset(text, kJsonMaxDepth));
}

int json_decode(lua_State* L) {
  std::string_view text = check_string(L, 1, "flare.json.decode", "text");
  lua_settop(L, 1);
  LuaJsonBuilder builder(L);
  EventsToLua sink(builder);
  try {
    text::thread_json_parser().parse(text, sink);
  } catch (const JsonTooDeep&) {
    throw std::runtime_error("flare.json.decode: " + too_deep(text, 0));
  } catch (const text::JsonSyntaxError& e) {
    throw std::runtime_error(std::string("flare.json.decode: ") + e.what());
  }
  builder.take_result();
  return 1;
}

// decode_lines(text, {source =}) -> a list of the values of the lines that are not blank,
// and a list of their line numbers. Errors: "SOURCE line N: invalid JSON at byte offset
// K: ..." (K counts from the start of text; SOURCE defaults to flare.json.decode_lines).
int json_decode_lines(lua_State* L) {
  std::string_view text = check_string(L, 1, "flare.json.decode_lines", "text");
  std::string source;
  {
    Options o(L, 2, "flare.json.decode_lines", false);
    source = o.string("source", "flare.json.decode_lines");
    o.finish();
  }
  lua_settop(L, 1);
  // While the result grows the collector would mark it again each time the heap doubles
  // (a third of the time on a 100 MB file): a high pause lets the running cycle finish
  // and starts no other during the call. (Stopping it instead could freeze the string
  // table in its sweep phase, where LuaJIT does not resize it: quadratic interning.)
  struct RaisePause {
    lua_State* L;
    int old;
    ~RaisePause() {
      lua_gc(L, LUA_GCSETPAUSE, old);
      lua_gc(L, LUA_GCRESTART, -1);  // threshold from the restored pause
    }
  } pause{L, lua_gc(L, LUA_GCSETPAUSE, 1000)};
  // The pause counts from the end of a cycle: a collector idle since one that ended under
  // the old pause would start a new cycle once the heap doubled, midway through the
  // result, and mark and sweep it. When the result may double the heap (values take
  // about twice their text), that cycle is done now instead, before the result exists:
  // the running one is finished, or one is made over the heap as it is, and its end
  // counts the high pause. Below 1 MiB of text a cycle midway costs less than that one.
  double heap_bytes = lua_gc(L, LUA_GCCOUNT, 0) * 1024.0;
  if (text.size() >= (std::size_t{1} << 20) && lua_gc(L, LUA_GCISRUNNING, 0) &&
      2.0 * static_cast<double>(text.size()) >= heap_bytes) {
    while (lua_gc(L, LUA_GCSTEP, 0) == 0) {
    }
  }
  // Room in the string table for about a new string per 256 bytes of text (a data set's
  // ids and texts; metrics rows have fewer): one resize now, not one per doubling.
  if (text.size() >= (std::size_t{1} << 20)) reserve_strings(L, text.size() / 256);
  lua_newtable(L);  // 2: values
  lua_newtable(L);  // 3: their line numbers
  LuaJsonBuilder builder(L);
  EventsToLua sink(builder);
  int count = 0;
  std::size_t line_no = 0, line_start = 0;
  // A line's value is stored when the next line starts, and after the last.
  auto store = [&] {
    if (line_no == 0) return;
    builder.take_next();
    lua_rawseti(L, 2, ++count);
    lua_pushnumber(L, static_cast<double>(line_no));
    lua_rawseti(L, 3, count);
  };
  try {
    text::thread_json_parser().parse_lines(text, sink, [&](std::size_t n, std::size_t offset) {
      store();
      line_no = n;
      line_start = offset;
    });
    store();
  } catch (const JsonTooDeep&) {
    std::string_view rest = text.substr(line_start);
    rest = rest.substr(0, rest.find('\n'));
    throw std::runtime_error(source + " line " + std::to_string(line_no) + ": " +
                             too_deep(rest, line_start));
  } catch (const text::JsonSyntaxError& e) {
    throw std::runtime_error(source + " " + e.what());
  }
  lua_settop(L, 3);
  return 2;
}

// parser() -> "simdjson", or "nlohmann (WHY)" when libflare-simdjson.so could not be used.
int json_parser(lua_State* L) {
  std::string missing = text::json_fast_parser_missing();
  std::string name = missing.empty() ? "simdjson" : "nlohmann (" + missing + ")";
  lua_pushlstring(L, name.data(), name.size());
  return 1;
}

// Writes JSON text into one growing buffer.
class TextWriter : public JsonWriter {
 public:
  explicit TextWriter(bool pretty) : pretty_(pretty) { out.reserve(256); }
  std::string out;

  void null() override { value_prefix(), out.append("null", 4); }
  void boolean(bool b) override {
    value_prefix(), b ? out.append("true", 4) : out.append("false", 5);
  }
  void integer(std::int64_t n) override {
    value_prefix();
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, n);
    out.append(buf, r.ptr);
  }
  void unsigned_integer(std::uint64_t n) override {
    value_prefix();
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, n);
    out.append(buf, r.ptr);
  }
  void number(double d) override {
    value_prefix();
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, d);  // shortest round-trip form
    out.append(buf, r.ptr);
  }
  void string(std::string_view s) override {
    value_prefix();
    quoted(s);
  }
  void begin_array() override { open('['); }
  void end_array() override { close(']'); }
  void begin_object() override { open('{'); }
  void end_object() override { close('}'); }
  void key(std::string_view k) override {
    separator();
    quoted(k);
    out.append(pretty_ ? ": " : ":");
    after_key_ = true;
  }

 private:
  void value_prefix() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    separator();
  }
  void separator() {
    if (depth_ == 0) return;
    if (!first_.back()) out.push_back(',');
    first_.back() = false;
    newline();
  }
  void newline() {
    if (!pretty_) return;
    out.push_back('\n');
    out.append(static_cast<std::size_t>(depth_) * 2, ' ');
  }
  void open(char c) {
    value_prefix();
    out.push_back(c);
    ++depth_;
    first_.push_back(true);
  }
  void close(char c) {
    bool empty = first_.back();
    first_.pop_back();
    --depth_;
    if (!empty) newline();
    out.push_back(c);
  }
  void quoted(std::string_view s) { text::append_json_string(out, s); }

  bool pretty_;
  bool after_key_ = false;
  int depth_ = 0;
  std::vector<bool> first_;
};

int json_encode(lua_State* L) {
  Options o(L, 2, "flare.json.encode", false);
  bool pretty = o.boolean("pretty", false);
  bool sort_keys = o.boolean("sort_keys", false);
  o.finish();
  int t = lua_type(L, 1);
  if (t == LUA_TNONE || t == LUA_TFUNCTION || t == LUA_TTHREAD)
    raise_invalid("flare.json.encode",
                  "argument 'value' must be a table, string, number, boolean "
                  "or flare.json.null, got " +
                      type_of(L, 1));
  lua_settop(L, 1);
  TextWriter writer(pretty);
  walk_lua_value(L, 1, writer, sort_keys, "flare.json.encode");
  lua_pushlstring(L, writer.out.data(), writer.out.size());
  return 1;
}

int mark(lua_State* L, JsonKind kind, const char* who) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  check_table(L, 1, who, "t");
  lua_settop(L, 1);
  if (lua_getmetatable(L, 1)) {
    lua_pop(L, 1);
    if (json_kind(L, 1) == JsonKind::none)
      raise_invalid(who, "argument 't' already has a metatable");
  }
  set_json_kind(L, 1, kind);
  return 1;
}

int json_array(lua_State* L) {
  return mark(L, JsonKind::array, "flare.json.array");
}
int json_object(lua_State* L) {
  return mark(L, JsonKind::object, "flare.json.object");
}

int open_json(lua_State* L) {
  static const luaL_Reg functions[] = {
      {"encode", json_encode}, {"decode", json_decode}, {"decode_lines", json_decode_lines},
      {"parser", json_parser}, {"array", json_array},   {"object", json_object},
      {nullptr, nullptr},
  };
  push_functions(L, functions);
  push_json_null(L);
  lua_setfield(L, -2, "null");
  return 1;
}

}  // namespace
}  // namespace flare::lua

FLARE_LUA_MODULE(json, flare::lua::open_json);
