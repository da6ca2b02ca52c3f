#include "text/json_parse.hpp"

#include <exception>
#include <new>
#include <nlohmann/json.hpp>
#include <vector>

#include "runtime/shared_library.hpp"
#include "text/escape.hpp"
#include "text/simdjson_abi.h"

#ifndef FLARE_INSTALL_LIBDIR
#define FLARE_INSTALL_LIBDIR "/usr/local/lib/flare"
#endif

namespace flare::text {
namespace {

using nlohmann::json;

// The module, opened on first use: next to the program (the build dir), under
// ../lib/flare of it, the configured install dir, then the loader's search path
// (LD_LIBRARY_PATH: the unit tests). Without it the exact
// parser parses everything (slower, same results).
struct Module {
  decltype(&flare_simdjson_parser_new) parser_new = nullptr;
  decltype(&flare_simdjson_parser_free) parser_free = nullptr;
  decltype(&flare_simdjson_parse) parse = nullptr;
  std::string missing;  // why it could not be used
};

const Module& module() {
  static const Module m = [] {
    Module m;
    static const char* kName = "libflare-simdjson.so";
    static SharedLibrary lib(
        {executable_dir() + "/" + kName, executable_dir() + "/../lib/flare/" + kName,
         std::string(FLARE_INSTALL_LIBDIR) + "/" + kName, kName},
        "fast JSON parsing");
    try {
      auto version =
          lib.function<decltype(flare_simdjson_abi_version)>("flare_simdjson_abi_version");
      if (version() != FLARE_SIMDJSON_ABI_VERSION) {
        m.missing = std::string(kName) + " does not match this program";
        return m;
      }
      m.parser_new = lib.function<decltype(flare_simdjson_parser_new)>("flare_simdjson_parser_new");
      m.parser_free =
          lib.function<decltype(flare_simdjson_parser_free)>("flare_simdjson_parser_free");
      m.parse = lib.function<decltype(flare_simdjson_parse)>("flare_simdjson_parse");
    } catch (const std::exception& e) {
      m.missing = e.what();
    }
    return m;
  }();
  return m;
}

// nlohmann's SAX events to the sink; records the first syntax error.
struct Sax {
  JsonEvents& sink;
  std::size_t error_position = 0;
  std::string error;

  bool null() { return sink.null(), true; }
  bool boolean(bool v) { return sink.boolean(v), true; }
  bool number_integer(json::number_integer_t v) { return sink.integer(v), true; }
  bool number_unsigned(json::number_unsigned_t v) { return sink.unsigned_integer(v), true; }
  bool number_float(json::number_float_t v, const json::string_t&) { return sink.number(v), true; }
  bool string(json::string_t& s) { return sink.string(s), true; }
  bool binary(json::binary_t&) { return false; }
  bool start_object(std::size_t) { return sink.begin_object(0), true; }
  bool key(json::string_t& s) { return sink.key(s), true; }
  bool end_object() { return sink.end_container(), true; }
  bool start_array(std::size_t) { return sink.begin_array(0), true; }
  bool end_array() { return sink.end_container(), true; }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) {
    error_position = position;
    error = e.what();
    return false;
  }
};

// nlohmann's message is "[json.exception.parse_error.101] parse error at line 1,
// column 5: syntax error ..."; keep the part after the position, made printable.
std::string error_detail(const std::string& what) {
  std::string detail = what;
  if (detail.starts_with("[json.exception.")) detail.erase(0, detail.find("] ") + 2);
  if (detail.starts_with("parse error at line")) detail.erase(0, detail.find(": ") + 2);
  return printable(detail);
}

bool blank(std::string_view line) {
  return line.find_first_not_of(" \t\r") == std::string_view::npos;
}

}  // namespace

JsonSyntaxError::JsonSyntaxError(std::size_t line_, std::size_t offset_, std::string detail_,
                                 bool with_line)
    : std::runtime_error((with_line ? "line " + std::to_string(line_) + ": " : std::string()) +
                         "invalid JSON at byte offset " + std::to_string(offset_) + ": " + detail_),
      line(line_),
      offset(offset_),
      detail(std::move(detail_)) {}

struct JsonParser::Impl {
  static constexpr std::size_t kKeepCapacity = std::size_t{8} << 20;
  // parse_lines parses this many lines ahead, one fast parser each, and lets the sink
  // prepare them all before it receives the first (JsonEvents::prepare).
  static constexpr std::size_t kBatch = 16;
  std::vector<flare_simdjson_parser*> fast;  // empty without the module
  std::vector<bool> grown;                   // parser i parsed a text of kKeepCapacity or more
  bool any_grown = false;

  Impl() {
    if (!module().parse) return;
    for (std::size_t i = 0; i < kBatch; ++i) {
      flare_simdjson_parser* p = module().parser_new();
      if (!p) break;
      fast.push_back(p);
    }
    grown.assign(fast.size(), false);
  }
  ~Impl() {
    for (flare_simdjson_parser* p : fast) module().parser_free(p);
  }

  // Parses text with fast parser i: its events, or false when simdjson refused it (or
  // there is no module). `padded` says that FLARE_SIMDJSON_PADDING bytes after it may
  // be read.
  bool parse_fast(std::size_t i, std::string_view text, bool padded, const JsonEvent*& events,
                  std::size_t& count) {
    if (i >= fast.size()) return false;
    if (text.size() > kKeepCapacity) grown[i] = any_grown = true;
    int r = module().parse(fast[i], text.data(), text.size(), padded ? 1 : 0, &events, &count);
    if (r == 2) throw std::bad_alloc();
    return r == 0;
  }

  // A parser keeps buffers of a few times the largest text it parsed: after a big one,
  // a fresh parser gives them back.
  void shrink() {
    if (!any_grown) return;
    any_grown = false;
    for (std::size_t i = 0; i < fast.size(); ++i) {
      if (!grown[i]) continue;
      grown[i] = false;
      if (flare_simdjson_parser* p = module().parser_new()) {
        module().parser_free(fast[i]);
        fast[i] = p;
      }
    }
  }

  // simdjson refused the text at `base` of an enclosing text (a syntax error, or a number
  // it does not read such as an integer beyond 64 bits): the exact parser decides, and
  // names the offset.
  void parse_exact(std::string_view text, JsonEvents& sink, std::size_t line, std::size_t base,
                   bool with_line) {
    Sax sax{sink, 0, {}};
    if (json::sax_parse(text.begin(), text.end(), &sax)) return;
    // nlohmann counts the offending byte as read; report its 0-based offset.
    std::size_t offset = sax.error_position > 0 ? sax.error_position - 1 : 0;
    if (offset > text.size()) offset = text.size();
    throw JsonSyntaxError(line, base + offset, error_detail(sax.error), with_line);
  }
};

void JsonEvents::value(const JsonEvent* events, std::size_t count) {
  send_json_events(events, count, *this);
}

JsonParser::JsonParser() : impl_(std::make_unique<Impl>()) {}
JsonParser::~JsonParser() = default;

void JsonParser::parse(std::string_view text, JsonEvents& sink) {
  struct Shrink {
    Impl& impl;
    ~Shrink() { impl.shrink(); }
  } shrink{*impl_};
  const JsonEvent* events = nullptr;
  std::size_t count = 0;
  if (impl_->parse_fast(0, text, false, events, count)) {
    sink.value(events, count);
    return;
  }
  impl_->parse_exact(text, sink, 1, 0, false);
}

void JsonParser::parse_lines_impl(std::string_view text, JsonEvents& sink, LineHook& hook) {
  struct Shrink {
    Impl& impl;
    ~Shrink() { impl.shrink(); }
  } shrink{*impl_};
  struct Parsed {
    std::size_t line_no, start;
    const JsonEvent* events;
    std::size_t count;
  };
  Parsed batch[Impl::kBatch];
  const std::size_t batch_size = impl_->fast.empty() ? 1 : impl_->fast.size();
  std::size_t start = 0, line_no = 0;
  while (start < text.size()) {
    // Up to kBatch lines that are not blank, parsed ahead; the batch ends before a line
    // simdjson refuses, which the exact parser then reads, and after a big line.
    std::size_t n = 0;
    std::string_view refused;
    std::size_t refused_start = 0;
    while (n < batch_size && start < text.size()) {
      ++line_no;
      std::size_t end = text.find('\n', start);
      if (end == std::string_view::npos) end = text.size();
      std::string_view line = text.substr(start, end - start);
      std::size_t line_start = start;
      start = end + 1;
      if (blank(line)) continue;
      // Bytes of the following lines serve as simdjson's padding: no copy but near the end.
      bool padded = end + FLARE_SIMDJSON_PADDING <= text.size();
      Parsed& p = batch[n];
      if (!impl_->parse_fast(n, line, padded, p.events, p.count)) {
        refused = line;
        refused_start = line_start;
        break;
      }
      p.line_no = line_no;
      p.start = line_start;
      ++n;
      if (line.size() > Impl::kKeepCapacity) break;  // one big parser at a time
    }
    for (std::size_t i = 0; i < n; ++i) sink.prepare(batch[i].events, batch[i].count);
    for (std::size_t i = 0; i < n; ++i) {
      hook.line(batch[i].line_no, batch[i].start);
      sink.value(batch[i].events, batch[i].count);
    }
    if (refused.data()) {
      hook.line(line_no, refused_start);
      impl_->parse_exact(refused, sink, line_no, refused_start, true);
    }
    impl_->shrink();
  }
}

std::string json_fast_parser_missing() {
  return module().parse ? std::string() : module().missing;
}

JsonParser& thread_json_parser() {
  thread_local JsonParser parser;
  return parser;
}

std::size_t json_too_deep_offset(std::string_view text, int max_depth) {
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
      if (++depth > max_depth) return i;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return text.size();
}

}  // namespace flare::text
