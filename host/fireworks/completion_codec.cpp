#include "fireworks/completion_codec.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <system_error>

#include "runtime/error.hpp"
#include "text/escape.hpp"
#include "text/utf8.hpp"

namespace flare::fireworks {
namespace {

void append_int(std::string& out, std::int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_double(std::string& out, double v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

[[noreturn]] void bad(const std::string& what) {
  throw Error("bad_response", "completion response: " + what, 200, true);
}

using json = nlohmann::json;

// One JSON document, or a discarded value. nlohmann reads a NUL byte as the end
// of its input, so a text holding one would pass with whatever follows it unread;
// a JSON text never holds a raw NUL, so such a text is refused whole.
json parse_document(std::string_view text) {
  if (text.find('\0') != std::string_view::npos) return json(json::value_t::discarded);
  return json::parse(text.begin(), text.end(), nullptr, false);
}

// --- what a response said, before the SDK's rules are applied ------------------------------
struct Raw {
  std::string text;
  bool have_text = false;
  std::string finish_reason;
  bool have_ids = false;  // raw_output.completion_token_ids was present
  std::vector<int> tokens;
  std::vector<int> prompt_tokens;
  bool have_logprobs = false;
  std::vector<double> logprobs;
  std::vector<double> sampling;  // NaN where an entry had no sampling_logprob
  std::vector<std::vector<TopLogprob>> top;
  std::optional<std::int64_t> completion_tokens;
  std::string model;
  bool have_model = false;
  ServerMetrics metrics;
  bool have_perf = false;
  bool done = false;  // a stream's [DONE]
};

const json& field(const json& obj, const char* name, const char* where) {
  auto it = obj.find(name);
  if (it == obj.end()) bad(std::string("missing field '") + where + "'");
  return *it;
}

void read_ids(const json& arr, std::vector<int>& out, const char* where) {
  if (!arr.is_array()) bad(std::string("field '") + where + "' must be a list of token ids");
  out.clear();
  out.reserve(arr.size());
  for (const auto& v : arr) {
    if (!v.is_number_integer()) bad(std::string("field '") + where + "' must hold integers");
    out.push_back(v.get<int>());
  }
}

void read_entry(const json& e, bool want_top, Raw& out) {
  if (!e.is_object()) bad("logprobs.content entries must be objects");
  const json& lp = field(e, "logprob", "logprobs.content[].logprob");
  if (!lp.is_number()) bad("logprobs.content[].logprob must be a number");
  out.logprobs.push_back(lp.get<double>());
  auto s = e.find("sampling_logprob");
  out.sampling.push_back(s != e.end() && s->is_number() ? s->get<double>()
                                                        : std::numeric_limits<double>::quiet_NaN());
  if (!want_top) return;
  std::vector<TopLogprob> top;
  auto t = e.find("top_logprobs");
  if (t != e.end() && t->is_array()) {
    for (const auto& x : *t) {
      if (!x.is_object()) continue;
      TopLogprob tl;
      auto id = x.find("token_id");
      if (id != x.end() && id->is_number_integer()) tl.token_id = id->get<int>();
      auto l = x.find("logprob");
      if (l != x.end() && l->is_number()) tl.logprob = l->get<double>();
      top.push_back(tl);
    }
  }
  out.top.push_back(std::move(top));
}

void read_perf_metrics(const json& pm, Raw& out) {
  if (!pm.is_object()) return;
  out.have_perf = true;
  for (auto it = pm.begin(); it != pm.end(); ++it) {
    if (it->is_string()) {
      set_metric(out.metrics, it.key(), it->get_ref<const std::string&>());
    } else if (it->is_number()) {
      set_metric(out.metrics, it.key(), it->dump());
    }
  }
}

// One response body, or one chunk of a stream (then text is appended, the
// logprob entries extend the lists, and raw_output, usage and the finish
// reason replace what earlier chunks said), read through the DOM.
void read_doc(const json& doc, const SamplingParams& params, bool chunk, Raw& out) {
  if (!doc.is_object()) bad("the body is not a JSON object");
  if (auto e = doc.find("error"); chunk && e != doc.end()) {
    const json* m = e->is_object() && e->contains("message") ? &(*e)["message"] : &*e;
    bad("the stream reported an error: " + (m->is_string() ? m->get<std::string>() : m->dump()));
  }
  auto cs = doc.find("choices");
  if (cs == doc.end()) {
    if (!chunk) bad("missing field 'choices'");
  } else {
    if (!cs->is_array() || (cs->empty() && !chunk)) bad("field 'choices' must be a non-empty list");
    if (!cs->empty()) {
      const json& c = (*cs)[0];
      if (!c.is_object()) bad("choices[0] must be an object");
      auto text = c.find("text");
      if (text == c.end()) {
        if (!chunk) bad("missing field 'choices[0].text'");
      } else if (!text->is_string()) {
        bad("choices[0].text must be a string");
      } else {
        out.text += text->get_ref<const std::string&>();
        out.have_text = true;
      }
      auto fr = c.find("finish_reason");
      if (fr != c.end() && fr->is_string()) out.finish_reason = fr->get<std::string>();
      auto raw = c.find("raw_output");
      if (raw != c.end() && raw->is_object()) {
        if (auto it = raw->find("completion_token_ids"); it != raw->end()) {
          read_ids(*it, out.tokens, "choices[0].raw_output.completion_token_ids");
          out.have_ids = true;
        }
        if (auto it = raw->find("prompt_token_ids"); it != raw->end()) {
          read_ids(*it, out.prompt_tokens, "choices[0].raw_output.prompt_token_ids");
        }
      }
      if (auto it = c.find("prompt_token_ids"); it != c.end() && it->is_array()) {
        read_ids(*it, out.prompt_tokens, "choices[0].prompt_token_ids");
      }
      if (params.logprobs) {
        auto lp = c.find("logprobs");
        if (lp != c.end() && lp->is_object()) {
          const json& content = field(*lp, "content", "choices[0].logprobs.content");
          if (!content.is_array()) bad("choices[0].logprobs.content must be a list");
          for (const auto& e : content) read_entry(e, params.top_logprobs > 0, out);
          out.have_logprobs = true;
        } else if (!chunk) {
          bad("choices[0].logprobs is missing although logprobs were requested");
        }
      }
    }
  }
  if (auto u = doc.find("usage"); u != doc.end() && u->is_object()) {
    if (auto ct = u->find("completion_tokens"); ct != u->end() && ct->is_number_integer()) {
      out.completion_tokens = ct->get<std::int64_t>();
    }
  }
  if (auto m = doc.find("model"); m != doc.end() && m->is_string()) {
    out.model = m->get<std::string>();
    out.have_model = true;
  }
  if (auto pm = doc.find("perf_metrics"); pm != doc.end()) read_perf_metrics(*pm, out);
}

// --- fast path ------------------------------------------------------------------------------
// The common response (no logprobs asked for) read straight from the text,
// without building a DOM. Anything it does not expect -- including every
// malformed body -- makes it give up, and the DOM path below then parses the
// body and words the error.
class Scanner {
 public:
  explicit Scanner(std::string_view s) : p_(s.data()), end_(s.data() + s.size()) {}

  void ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }
  bool eat(char c) {
    ws();
    if (p_ < end_ && *p_ == c) {
      ++p_;
      return true;
    }
    return false;
  }
  bool peek(char c) {
    ws();
    return p_ < end_ && *p_ == c;
  }
  bool at_end() {
    ws();
    return p_ == end_;
  }

  // A JSON string into out (decoded, UTF-8 checked).
  bool string(std::string& out) {
    out.clear();
    return read_string(&out);
  }
  // The same without keeping the text.
  bool skip_string() { return read_string(nullptr); }
  // An object key: a view into the body when it has no escapes (the usual
  // case), else decoded into scratch.
  bool key(std::string& scratch, std::string_view& out) {
    ws();
    if (p_ < end_ && *p_ == '"') {
      const char* start = p_ + 1;
      const char* q = start;
      while (q < end_ && *q != '"' && *q != '\\' && static_cast<unsigned char>(*q) >= 0x20 &&
             static_cast<unsigned char>(*q) < 0x80)
        ++q;
      if (q < end_ && *q == '"') {
        out = std::string_view(start, static_cast<std::size_t>(q - start));
        p_ = q + 1;
        return eat(':');
      }
    }
    if (!string(scratch)) return false;
    out = scratch;
    return eat(':');
  }

  bool read_string(std::string* out) {
    if (!eat('"')) return false;
    for (;;) {
      const char* run = p_;
      while (p_ < end_ && *p_ != '"' && *p_ != '\\' && static_cast<unsigned char>(*p_) >= 0x20 &&
             static_cast<unsigned char>(*p_) < 0x80)
        ++p_;
      if (out) out->append(run, p_);
      if (p_ == end_) return false;
      unsigned char c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        ++p_;
        return true;
      }
      if (c < 0x20) return false;
      if (c >= 0x80) {
        if (!utf8(out)) return false;
        continue;
      }
      // Backslash escape.
      if (++p_ == end_) return false;
      char e = *p_++;
      switch (e) {
        case '"':
        case '\\':
        case '/':
          if (out) out->push_back(e);
          break;
        case 'b':
          if (out) out->push_back('\b');
          break;
        case 'f':
          if (out) out->push_back('\f');
          break;
        case 'n':
          if (out) out->push_back('\n');
          break;
        case 'r':
          if (out) out->push_back('\r');
          break;
        case 't':
          if (out) out->push_back('\t');
          break;
        case 'u': {
          std::uint32_t cp = 0;
          if (!hex4(cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            std::uint32_t lo = 0;
            if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return false;
            p_ += 2;
            if (!hex4(lo) || lo < 0xDC00 || lo > 0xDFFF) return false;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return false;
          }
          if (out) put_utf8(*out, cp);
          break;
        }
        default:
          return false;
      }
    }
  }

  // An integer that fits in int64 (no fraction, no exponent).
  bool integer(std::int64_t& v) {
    ws();
    const char* start = p_;
    if (p_ < end_ && *p_ == '-') ++p_;
    if (p_ == end_ || *p_ < '0' || *p_ > '9') return false;
    auto r = std::from_chars(start, end_, v);
    if (r.ec != std::errc()) return false;
    p_ = r.ptr;
    return p_ == end_ || (*p_ != '.' && *p_ != 'e' && *p_ != 'E');
  }

  bool ids(std::vector<int>& out) {
    out.clear();
    if (!eat('[')) return false;
    if (eat(']')) return true;
    do {
      std::int64_t v = 0;
      if (!integer(v) || v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max())
        return false;
      out.push_back(static_cast<int>(v));
    } while (eat(','));
    return eat(']');
  }

  // Skips any JSON value.
  bool skip(int depth = 0) {
    ws();
    if (p_ == end_ || depth > 64) return false;
    char c = *p_;
    if (c == '"') return skip_string();
    if (c == '{' || c == '[') {
      char close = c == '{' ? '}' : ']';
      ++p_;
      if (eat(close)) return true;
      do {
        if (c == '{') {
          if (!skip_string() || !eat(':')) return false;
        }
        if (!skip(depth + 1)) return false;
      } while (eat(','));
      return eat(close);
    }
    if (literal("true") || literal("false") || literal("null")) return true;
    // A number.
    const char* start = p_;
    if (p_ < end_ && *p_ == '-') ++p_;
    while (p_ < end_ && ((*p_ >= '0' && *p_ <= '9') || *p_ == '.' || *p_ == 'e' || *p_ == 'E' ||
                         *p_ == '+' || *p_ == '-'))
      ++p_;
    double d = 0;
    return p_ > start && std::from_chars(start, p_, d).ptr == p_;
  }

  bool literal(std::string_view word) {
    ws();
    if (static_cast<std::size_t>(end_ - p_) < word.size() ||
        std::string_view(p_, word.size()) != word)
      return false;
    p_ += word.size();
    return true;
  }

 private:
  bool hex4(std::uint32_t& v) {
    if (end_ - p_ < 4) return false;
    v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = *p_++;
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= static_cast<std::uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        v |= static_cast<std::uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        v |= static_cast<std::uint32_t>(c - 'A' + 10);
      } else {
        return false;
      }
    }
    return true;
  }

  static void put_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  // One well-formed UTF-8 sequence (as the DOM parser requires), copied to out.
  bool utf8(std::string* out) {
    const size_t len = text::utf8_sequence_length(std::string_view(p_, end_ - p_), 0);
    if (len == 0) return false;
    if (out) out->append(p_, p_ + len);
    p_ += len;
    return true;
  }

  const char* p_;
  const char* end_;
};

bool fast_raw_output(Scanner& s, Raw& out) {
  if (!s.peek('{')) return s.skip();  // not an object: ignored, as by the DOM path
  s.eat('{');
  if (s.eat('}')) return true;
  std::string scratch;
  std::string_view key;
  do {
    if (!s.key(scratch, key)) return false;
    if (key == "completion_token_ids") {
      if (!s.ids(out.tokens)) return false;
      out.have_ids = true;
    } else if (key == "prompt_token_ids") {
      if (!s.ids(out.prompt_tokens)) return false;
    } else if (!s.skip()) {
      return false;
    }
  } while (s.eat(','));
  return s.eat('}');
}

bool fast_choice(Scanner& s, Raw& out, std::string& piece) {
  if (!s.eat('{')) return false;
  if (s.eat('}')) return false;  // no text: the DOM path words the error
  std::string scratch;
  std::string_view key;
  bool have_text = false;
  do {
    if (!s.key(scratch, key)) return false;
    if (key == "text") {
      if (!s.string(piece)) return false;
      out.text += piece;
      have_text = true;
    } else if (key == "finish_reason") {
      if (s.peek('"')) {
        if (!s.string(out.finish_reason)) return false;
      } else if (!s.skip()) {
        return false;
      }
    } else if (key == "raw_output") {
      if (!fast_raw_output(s, out)) return false;
    } else if (key == "logprobs") {
      if (!s.literal("null")) return false;  // entries: the DOM path reads them
    } else if (!s.skip()) {
      return false;
    }
  } while (s.eat(','));
  out.have_text = out.have_text || have_text;
  return s.eat('}') && have_text;
}

bool fast_usage(Scanner& s, std::optional<std::int64_t>& completion_tokens) {
  if (!s.peek('{')) return s.skip();
  s.eat('{');
  if (s.eat('}')) return true;
  std::string scratch;
  std::string_view key;
  do {
    if (!s.key(scratch, key)) return false;
    // Integers only; anything else is ignored, as by the DOM path.
    if (key != "completion_tokens" || s.peek('"') || s.peek('{') || s.peek('[') || s.peek('t') ||
        s.peek('f') || s.peek('n')) {
      if (!s.skip()) return false;
      continue;
    }
    Scanner probe = s;
    std::int64_t v = 0;
    if (probe.integer(v)) {
      s = probe;
      completion_tokens = v;
    } else if (!s.skip()) {
      return false;
    }
  } while (s.eat(','));
  return s.eat('}');
}

bool fast_perf_metrics(Scanner& s, Raw& out) {
  if (!s.eat('{')) return false;
  out.have_perf = true;
  if (s.eat('}')) return true;
  std::string scratch, value;
  std::string_view key;
  do {
    if (!s.key(scratch, key)) return false;
    std::string name(key);               // key may point into scratch, which string() reuses
    if (!s.string(value)) return false;  // numbers: the DOM path
    set_metric(out.metrics, name, value);
  } while (s.eat(','));
  return s.eat('}');
}

// Reads one body or stream chunk without logprobs into out, as read_doc would;
// false = let the DOM path handle it.
bool read_fast(std::string_view text, bool chunk, bool want_model, Raw& out) {
  Scanner s(text);
  if (!s.eat('{')) return false;
  bool have_choice = false;
  std::string scratch, piece;
  std::string_view key;
  if (!s.eat('}')) {
    do {
      if (!s.key(scratch, key)) return false;
      if (key == "choices") {
        if (have_choice || !s.eat('[')) return false;
        if (!fast_choice(s, out, piece)) return false;
        while (s.eat(','))
          if (!s.skip()) return false;
        if (!s.eat(']')) return false;
        have_choice = true;
      } else if (key == "model" && want_model) {
        if (s.peek('"')) {
          if (!s.string(out.model)) return false;
          out.have_model = true;
        } else if (!s.skip()) {
          return false;
        }
      } else if (key == "usage") {
        if (!fast_usage(s, out.completion_tokens)) return false;
      } else if (key == "perf_metrics") {
        if (!fast_perf_metrics(s, out)) return false;
      } else if (key == "error") {
        return false;  // the DOM path words it
      } else if (!s.skip()) {
        return false;
      }
    } while (s.eat(','));
    if (!s.eat('}')) return false;
  }
  return s.at_end() && (have_choice || chunk);
}

// Calls fn(data) for each event of an SSE stream (data lines joined by '\n').
template <class Fn>
void for_each_event(std::string_view body, Fn&& fn) {
  std::string data;
  bool have = false;
  std::size_t pos = 0;
  while (pos <= body.size()) {
    std::size_t nl = body.find('\n', pos);
    std::size_t end = nl == std::string_view::npos ? body.size() : nl;
    std::string_view line = body.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) {
      if (have && !fn(std::string_view(data))) return;
      data.clear();
      have = false;
    } else if (line.starts_with("data:")) {
      line.remove_prefix(5);
      if (line.starts_with(' ')) line.remove_prefix(1);
      if (have) data.push_back('\n');
      data.append(line);
      have = true;
    }
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  if (have) fn(std::string_view(data));
}

// A stream read chunk by chunk; false = a chunk the fast reader gave up on.
bool read_stream(std::string_view body, const SamplingParams& params, bool want_model, bool fast,
                 Raw& out) {
  bool ok = true;
  for_each_event(body, [&](std::string_view data) {
    if (data.starts_with("[DONE]")) {
      out.done = true;
      return false;
    }
    if (fast) {
      if (!read_fast(data, true, want_model, out)) ok = false;
      return ok;
    }
    json doc = parse_document(data);
    if (doc.is_discarded()) return true;  // skipped, as the SDK skips it
    read_doc(doc, params, true, out);
    return true;
  });
  return ok;
}

}  // namespace

bool set_metric(ServerMetrics& m, std::string_view name, std::string_view value) {
  auto real = [&](double& out) {
    double v = 0;
    auto r = std::from_chars(value.data(), value.data() + value.size(), v);
    if (r.ec == std::errc() && r.ptr == value.data() + value.size()) out = v;
  };
  auto whole = [&](std::int64_t& out) {
    std::int64_t v = 0;
    auto r = std::from_chars(value.data(), value.data() + value.size(), v);
    if (r.ec == std::errc() && r.ptr == value.data() + value.size()) out = v;
  };
  if (name == "num-concurrent-requests") {
    whole(m.num_concurrent_requests);
  } else if (name == "prefill-queue-duration") {
    real(m.prefill_queue_duration);
  } else if (name == "generation-queue-duration") {
    real(m.generation_queue_duration);
  } else if (name == "server-time-to-first-token") {
    real(m.server_ttft);
  } else if (name == "cached-prompt-tokens") {
    whole(m.cached_prompt_tokens);
  } else if (name == "prompt-tokens") {
    whole(m.prompt_tokens);
  } else if (name == "server-processing-time") {
    real(m.server_processing_time);
  } else {
    return false;
  }
  return true;
}

void write_completion_head(std::string& out, std::string_view model) {
  out += "{\"model\":";
  text::append_json_string(out, model);
  out += ",\"prompt\":";
}

void append_prompt_json(std::string& out, const Prompt& prompt) {
  if (prompt.is_text) {
    text::append_json_string(out, prompt.text);
    return;
  }
  out.push_back('[');
  for (std::size_t i = 0; i < prompt.tokens.size(); ++i) {
    if (i) out.push_back(',');
    append_int(out, prompt.tokens[i]);
  }
  out.push_back(']');
}

void write_completion_tail(std::string& out, const SamplingParams& p,
                           std::optional<std::int64_t> seed) {
  out += ",\"n\":1,\"max_tokens\":";
  append_int(out, p.max_tokens);
  out += ",\"temperature\":";
  append_double(out, p.temperature);
  out += ",\"top_p\":";
  append_double(out, p.top_p);
  out += ",\"top_k\":";
  append_int(out, p.top_k);
  if (!p.stop.empty()) {
    out += ",\"stop\":[";
    for (std::size_t i = 0; i < p.stop.size(); ++i) {
      if (i) out.push_back(',');
      text::append_json_string(out, p.stop[i]);
    }
    out.push_back(']');
  }
  if (seed) {
    out += ",\"seed\":";
    append_int(out, *seed);
  }
  if (p.logprobs) {
    out += ",\"logprobs\":true";
    if (p.top_logprobs > 0) {
      out += ",\"top_logprobs\":";
      append_int(out, p.top_logprobs);
    }
  }
  if (p.echo) out += ",\"echo\":true";
  if (p.prompt_cache_max_len >= 0) {
    out += ",\"prompt_cache_max_len\":";
    append_int(out, p.prompt_cache_max_len);
  }
  out += p.stream ? ",\"raw_output\":true,\"stream\":true,\"perf_metrics_in_response\":true}"
                  : ",\"raw_output\":true,\"stream\":false}";
}

void write_completion_body(std::string& out, std::string_view model, const Prompt& prompt,
                           const SamplingParams& p, std::optional<std::int64_t> seed) {
  write_completion_head(out, model);
  append_prompt_json(out, prompt);
  write_completion_tail(out, p, seed);
}

Completion parse_completion(std::string_view body, const Prompt& prompt,
                            const SamplingParams& params, const std::string* snapshot_header) {
  const bool snapshot_known = snapshot_header && !snapshot_header->empty();
  Raw raw;
  // A server that ignores stream: true answers with one JSON body.
  const std::size_t first = body.find_first_not_of(" \t\r\n");
  const bool streamed = params.stream && first != body.npos && body[first] != '{';
  if (streamed) {
    if (params.logprobs || !read_stream(body, params, !snapshot_known, true, raw)) {
      raw = Raw();
      read_stream(body, params, !snapshot_known, false, raw);
    }
    // The SDK's SSE truncation: a stream that ends without [DONE], a finish
    // reason or raw_output was cut short by the server.
    if (!raw.have_ids && !raw.done && raw.finish_reason.empty()) {
      bad("the event stream ended mid-generation (" + std::to_string(body.size()) +
          " bytes, no [DONE], finish_reason or raw_output)");
    }
    if (raw.finish_reason.empty()) raw.finish_reason = "stop";
  } else if (params.logprobs || !read_fast(body, false, !snapshot_known, raw)) {
    raw = Raw();
    json doc = parse_document(body);
    if (doc.is_discarded())
      bad("the body is not valid JSON (" + std::to_string(body.size()) + " bytes; truncated?)");
    read_doc(doc, params, false, raw);
  }
  if (params.logprobs && !raw.have_logprobs)
    bad("choices[0].logprobs is missing although logprobs were requested");

  // From here on the answer is complete: what it breaks is the protocol, and
  // asking again would not help.
  auto protocol = [](const std::string& what) {
    throw Error("bad_response", "completion response: " + what, 200, false);
  };
  if (!raw.have_ids)
    protocol("raw_output.completion_token_ids is missing (the sampler asks for raw_output)");
  Completion out;
  out.text = std::move(raw.text);
  out.finish_reason = raw.finish_reason.empty() ? "unknown" : std::move(raw.finish_reason);
  out.prompt_tokens = std::move(raw.prompt_tokens);
  if (out.prompt_tokens.empty() && !prompt.is_text) out.prompt_tokens = prompt.tokens;
  out.tokens = std::move(raw.tokens);
  out.logprobs = std::move(raw.logprobs);
  std::vector<double> sampling = std::move(raw.sampling);
  out.top_logprobs = std::move(raw.top);

  if (params.echo) {
    // The SDK's echo alignment: completion_token_ids hold prompt + completion;
    // the prompt prefix is checked and removed, and the logprob lists drop
    // their first entry (the first token has nothing to condition on),
    // leaving P + C - 1 entries aligned with training's targets.
    const auto& p = out.prompt_tokens;
    if (out.tokens.size() < p.size() || !std::equal(p.begin(), p.end(), out.tokens.begin()))
      protocol("echo was requested but raw_output.completion_token_ids do not start with the " +
               std::to_string(p.size()) + " prompt tokens");
    out.tokens.erase(out.tokens.begin(),
                     out.tokens.begin() + static_cast<std::ptrdiff_t>(p.size()));
    if (params.logprobs) {
      out.logprobs_echoed = true;
      if (!out.logprobs.empty()) out.logprobs.erase(out.logprobs.begin());
      if (!sampling.empty()) sampling.erase(sampling.begin());
      if (!out.top_logprobs.empty()) out.top_logprobs.erase(out.top_logprobs.begin());
    }
  }
  if (params.logprobs) {
    std::size_t missing = 0;
    for (double v : sampling) missing += std::isnan(v) ? 1 : 0;
    if (missing == 0) {
      out.sampling_logprobs = std::move(sampling);
    } else if (missing == sampling.size() && params.temperature == 1.0 && params.top_p == 1.0 &&
               params.top_k == 0) {
      // The SDK's fallback: under full-distribution sampling the raw logprobs
      // are the behaviour policy's.
      out.sampling_logprobs = out.logprobs;
      out.sampling_source = SamplingLogprobs::Fallback;
    } else {
      out.sampling_source = SamplingLogprobs::Missing;
    }
  }
  out.completion_token_count = raw.completion_tokens.value_or(0);
  if (out.completion_token_count == 0)
    out.completion_token_count = static_cast<std::int64_t>(out.tokens.size());
  if (snapshot_known) {
    out.snapshot_identity = *snapshot_header;
  } else if (raw.have_model) {
    auto at = raw.model.rfind('@');
    if (at != std::string::npos) out.snapshot_identity = raw.model.substr(at + 1);
  }
  out.metrics = raw.metrics;
  out.have_perf_metrics = raw.have_perf;
  return out;
}

}  // namespace flare::fireworks
