#pragma once
// JSON text -> a stream of events, fast: simdjson parses (GB/s), and any text it
// refuses is parsed again by nlohmann's exact parser, which decides. So the
// accepted language, the values and the errors (0-based byte offsets, invalid
// UTF-8, numbers beyond a double) are nlohmann's; simdjson only makes the common,
// valid case fast. Integers beyond 64 bits become doubles, as nlohmann reads them.
// Duplicate keys are reported in order (a sink that stores them keeps the last).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include "text/simdjson_abi.h"

namespace flare::text {

// One event of a whole value (simdjson_abi.h: kinds FLARE_JSON_*, in document order).
using JsonEvent = flare_json_event;

// Receives one JSON value as events. Sizes are hints (element or member counts)
// and may be 0 when unknown. An exception thrown by a sink stops the parse and
// propagates to the caller unchanged.
class JsonEvents {
 public:
  virtual ~JsonEvents() = default;
  virtual void null() = 0;
  virtual void boolean(bool b) = 0;
  virtual void integer(std::int64_t n) = 0;
  virtual void unsigned_integer(std::uint64_t n) = 0;
  virtual void number(double d) = 0;
  virtual void string(std::string_view s) = 0;
  virtual void begin_array(std::size_t size) = 0;
  virtual void begin_object(std::size_t size) = 0;
  virtual void key(std::string_view k) = 0;
  virtual void end_container() = 0;
  // A whole value at once, as the fast parser gives it; by default each event goes to
  // the methods above. A sink that builds values overrides it to save a call per event.
  virtual void value(const JsonEvent* events, std::size_t count);
  // The events of a value the sink receives later through value(), before any value
  // prepared after it; the events stay valid until then. A sink may start on them
  // (flare.json interns their strings: one lookup after another overlap in the CPU).
  virtual void prepare(const JsonEvent*, std::size_t) {}
};

// Sends events[0..count) to sink's methods (those of JsonEvents, not necessarily virtual).
template <class Sink>
void send_json_events(const JsonEvent* events, std::size_t count, Sink& sink) {
  for (const JsonEvent* e = events; e != events + count; ++e) {
    switch (e->kind) {
      case FLARE_JSON_NULL:
        sink.null();
        break;
      case FLARE_JSON_FALSE:
      case FLARE_JSON_TRUE:
        sink.boolean(e->kind == FLARE_JSON_TRUE);
        break;
      case FLARE_JSON_INT64:
        sink.integer(e->v.i);
        break;
      case FLARE_JSON_UINT64:
        sink.unsigned_integer(e->v.u);
        break;
      case FLARE_JSON_DOUBLE:
        sink.number(e->v.d);
        break;
      case FLARE_JSON_STRING:
        sink.string(std::string_view(e->v.s, e->size));
        break;
      case FLARE_JSON_KEY:
        sink.key(std::string_view(e->v.s, e->size));
        break;
      case FLARE_JSON_ARRAY:
        sink.begin_array(e->size);
        break;
      case FLARE_JSON_OBJECT:
        sink.begin_object(e->size);
        break;
      case FLARE_JSON_END:
        sink.end_container();
        break;
    }
  }
}

// Malformed text. offset is 0-based in the whole text given to the parser; line is
// 1-based (always 1 for JsonParser::parse). what() is "invalid JSON at byte offset N:
// detail", with "line L: " in front for parse_lines.
struct JsonSyntaxError : std::runtime_error {
  JsonSyntaxError(std::size_t line, std::size_t offset, std::string detail, bool with_line);
  std::size_t line;
  std::size_t offset;
  std::string detail;  // printable
};

// One parser per thread: it keeps its buffers between calls.
class JsonParser {
 public:
  JsonParser();
  ~JsonParser();
  JsonParser(const JsonParser&) = delete;
  JsonParser& operator=(const JsonParser&) = delete;

  // One JSON value, surrounded by optional whitespace.
  void parse(std::string_view text, JsonEvents& sink);

  // JSON lines: calls on_line(line_no, offset) and then sends that line's value to
  // the sink, for every line that is not blank (spaces, tabs, \r only); lines are
  // parsed ahead in batches, given to sink.prepare() before the first of them is sent.
  // A line that is not one JSON value throws JsonSyntaxError naming its line and the
  // byte offset in `text`.
  template <class OnLine>
  void parse_lines(std::string_view text, JsonEvents& sink, OnLine&& on_line) {
    LineVisitor<OnLine> v(on_line);
    parse_lines_impl(text, sink, v);
  }

  // Calls the lines' value event visitor; internal.
  struct LineHook {
    virtual ~LineHook() = default;
    virtual void line(std::size_t line_no, std::size_t offset) = 0;
  };

 private:
  template <class F>
  struct LineVisitor : LineHook {
    explicit LineVisitor(F& f) : f_(f) {}
    void line(std::size_t line_no, std::size_t offset) override { f_(line_no, offset); }
    F& f_;
  };
  void parse_lines_impl(std::string_view text, JsonEvents& sink, LineHook& hook);

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Empty when simdjson serves; else why not (libflare-simdjson.so missing).
std::string json_fast_parser_missing();

// The parser of the calling thread.
JsonParser& thread_json_parser();

// Byte offset of the bracket that opens nesting level max_depth + 1 (text.size()
// when there is none): where a "nesting too deep" error points.
std::size_t json_too_deep_offset(std::string_view text, int max_depth);

}  // namespace flare::text
