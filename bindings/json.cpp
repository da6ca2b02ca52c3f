// flare.json: encode(value, {pretty=, sort_keys=}), decode(text), null,
// array(t), object(t). The rules are in json_convert.hpp.
#include <charconv>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "json_convert.hpp"
#include "lua_support.hpp"
#include "module.hpp"
#include "text/escape.hpp"

namespace flare::lua {
namespace {

// Streams JSON text events straight into Lua tables (no intermediate DOM).
struct SaxToLua {
  using json = nlohmann::json;
  LuaJsonBuilder& b;
  std::size_t error_position = 0;
  std::string error;

  bool null() { return b.null(), true; }
  bool boolean(bool v) { return b.boolean(v), true; }
  bool number_integer(json::number_integer_t v) { return b.integer(v), true; }
  bool number_unsigned(json::number_unsigned_t v) { return b.unsigned_integer(v), true; }
  bool number_float(json::number_float_t v, const json::string_t&) { return b.number(v), true; }
  bool string(json::string_t& s) { return b.string(s.data(), s.size()), true; }
  bool binary(json::binary_t&) { return false; }
  bool start_object(std::size_t) { return b.begin_object(), true; }
  bool key(json::string_t& s) { return b.key(s.data(), s.size()), true; }
  bool end_object() { return b.end_container(), true; }
  bool start_array(std::size_t) { return b.begin_array(), true; }
  bool end_array() { return b.end_container(), true; }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) {
    error_position = position;
    error = e.what();
    return false;
  }
};

// nlohmann's message is "[json.exception.parse_error.101] parse error at line 1,
// column 5: syntax error ..."; keep the part after the position, made printable.
std::string parse_error_detail(const std::string& what) {
  std::string detail = what;
  if (detail.starts_with("[json.exception.")) detail.erase(0, detail.find("] ") + 2);
  if (detail.starts_with("parse error at line")) detail.erase(0, detail.find(": ") + 2);
  return text::printable(detail);
}

// Byte offset of the bracket that opens nesting level kJsonMaxDepth + 1.
std::size_t too_deep_offset(std::string_view text) {
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kJsonMaxDepth) return i;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return text.size();
}

int json_decode(lua_State* L) {
  std::string_view arg = check_string(L, 1, "flare.json.decode", "text");
  const char* text = arg.data();
  std::size_t n = arg.size();
  lua_settop(L, 1);
  LuaJsonBuilder builder(L);
  SaxToLua sax{builder, 0, {}};
  bool ok;
  try {
    ok = nlohmann::json::sax_parse(text, text + n, &sax);
  } catch (const JsonTooDeep& e) {
    throw std::runtime_error("flare.json.decode: " + std::string(e.what()) + " at byte offset " +
                             std::to_string(too_deep_offset(std::string_view(text, n))));
  }
  if (!ok) {
    // nlohmann counts the offending byte as read; report its 0-based offset.
    std::size_t offset = sax.error_position > 0 ? sax.error_position - 1 : 0;
    if (offset > n) offset = n;
    throw std::runtime_error("flare.json.decode: invalid JSON at byte offset " +
                             std::to_string(offset) + ": " + parse_error_detail(sax.error));
  }
  builder.take_result();
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
      {"encode", json_encode}, {"decode", json_decode}, {"array", json_array},
      {"object", json_object}, {nullptr, nullptr},
  };
  push_functions(L, functions);
  push_json_null(L);
  lua_setfield(L, -2, "null");
  return 1;
}

}  // namespace
}  // namespace flare::lua

FLARE_LUA_MODULE(json, flare::lua::open_json);
