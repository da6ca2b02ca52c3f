#include "fireworks/completion_codec.hpp"

#include <charconv>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
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

const json& field(const json& obj, const char* name, const char* where) {
  auto it = obj.find(name);
  if (it == obj.end()) bad(std::string("missing field '") + where + "'");
  return *it;
}

void read_ids(const json& arr, std::vector<int>& out, const char* where) {
  if (!arr.is_array()) bad(std::string("field '") + where + "' must be a list of token ids");
  out.reserve(arr.size());
  for (const auto& v : arr) {
    if (!v.is_number_integer()) bad(std::string("field '") + where + "' must hold integers");
    out.push_back(v.get<int>());
  }
}

struct LogprobEntry {
  double logprob = 0;
  double sampling_logprob = 0;
  std::string token;
  std::vector<TopLogprob> top;
};

LogprobEntry read_entry(const json& e, bool want_top) {
  LogprobEntry out;
  if (!e.is_object()) bad("logprobs.content entries must be objects");
  const json& lp = field(e, "logprob", "logprobs.content[].logprob");
  if (!lp.is_number()) bad("logprobs.content[].logprob must be a number");
  out.logprob = lp.get<double>();
  auto s = e.find("sampling_logprob");
  out.sampling_logprob = s != e.end() && s->is_number() ? s->get<double>() : out.logprob;
  auto t = e.find("token");
  if (t != e.end() && t->is_string()) out.token = t->get<std::string>();
  if (want_top) {
    auto top = e.find("top_logprobs");
    if (top != e.end() && top->is_array()) {
      for (const auto& x : *top) {
        if (!x.is_object()) continue;
        TopLogprob tl;
        auto id = x.find("token_id");
        if (id != x.end() && id->is_number_integer()) tl.token_id = id->get<int>();
        auto l = x.find("logprob");
        if (l != x.end() && l->is_number()) tl.logprob = l->get<double>();
        out.top.push_back(tl);
      }
    }
  }
  return out;
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

bool fast_raw_output(Scanner& s, Completion& out) {
  if (!s.peek('{')) return s.skip();  // not an object: ignored, as by the DOM path
  s.eat('{');
  if (s.eat('}')) return true;
  std::string scratch;
  std::string_view key;
  do {
    if (!s.key(scratch, key)) return false;
    if (key == "completion_token_ids") {
      if (!s.ids(out.tokens)) return false;
    } else if (key == "prompt_token_ids") {
      if (!s.ids(out.prompt_tokens)) return false;
    } else if (!s.skip()) {
      return false;
    }
  } while (s.eat(','));
  return s.eat('}');
}

bool fast_choice(Scanner& s, Completion& out, bool& have_text) {
  if (!s.eat('{')) return false;
  if (s.eat('}')) return false;  // no text: the DOM path words the error
  std::string scratch;
  std::string_view key;
  do {
    if (!s.key(scratch, key)) return false;
    if (key == "text") {
      if (!s.string(out.text)) return false;
      have_text = true;
    } else if (key == "finish_reason") {
      if (s.peek('"')) {
        if (!s.string(out.finish_reason)) return false;
      } else if (!s.skip()) {
        return false;
      }
    } else if (key == "raw_output") {
      out.tokens.clear();
      out.prompt_tokens.clear();
      if (!fast_raw_output(s, out)) return false;
    } else if (!s.skip()) {
      return false;
    }
  } while (s.eat(','));
  return s.eat('}') && have_text;
}

bool fast_usage(Scanner& s, std::optional<std::int64_t>& prompt_tokens,
                std::optional<std::int64_t>& completion_tokens) {
  if (!s.peek('{')) return s.skip();
  s.eat('{');
  if (s.eat('}')) return true;
  std::string scratch;
  std::string_view key;
  do {
    if (!s.key(scratch, key)) return false;
    std::optional<std::int64_t>* target = key == "prompt_tokens"       ? &prompt_tokens
                                          : key == "completion_tokens" ? &completion_tokens
                                                                       : nullptr;
    // Integers only; anything else is ignored, as by the DOM path.
    if (!target || s.peek('"') || s.peek('{') || s.peek('[') || s.peek('t') || s.peek('f') ||
        s.peek('n')) {
      if (!s.skip()) return false;
      continue;
    }
    Scanner probe = s;
    std::int64_t v = 0;
    if (probe.integer(v)) {
      s = probe;
      *target = v;
    } else if (!s.skip()) {
      return false;
    }
  } while (s.eat(','));
  return s.eat('}');
}

// Fills out (text, finish_reason, token ids, counts, snapshot) for a response
// without logprobs; false = let the DOM path handle this body.
bool parse_fast(std::string_view body, const Prompt& prompt, const SamplingParams& params,
                const std::string* snapshot_header, Completion& out) {
  Scanner s(body);
  if (!s.eat('{')) return false;
  bool have_choice = false, have_text = false;
  std::optional<std::int64_t> completion_tokens, prompt_tokens;
  std::string scratch, model;
  std::string_view key;
  bool have_model = false;
  if (!s.eat('}')) {
    do {
      if (!s.key(scratch, key)) return false;
      if (key == "choices") {
        if (have_choice || !s.eat('[')) return false;
        if (!fast_choice(s, out, have_text)) return false;
        while (s.eat(','))
          if (!s.skip()) return false;
        if (!s.eat(']')) return false;
        have_choice = true;
      } else if (key == "model" && !(snapshot_header && !snapshot_header->empty())) {
        if (s.peek('"')) {
          if (!s.string(model)) return false;
          have_model = true;
        } else if (!s.skip()) {
          return false;
        }
      } else if (key == "usage") {
        if (!fast_usage(s, prompt_tokens, completion_tokens)) return false;
      } else if (!s.skip()) {
        return false;
      }
    } while (s.eat(','));
    if (!s.eat('}')) return false;
  }
  if (!s.at_end() || !have_choice || !have_text) return false;
  (void)prompt_tokens;  // only needed to split echoed logprobs
  if (out.prompt_tokens.empty() && !prompt.is_text) out.prompt_tokens = prompt.tokens;
  if (completion_tokens) out.completion_token_count = *completion_tokens;
  if (params.echo && prompt.is_text && out.text.starts_with(prompt.text))
    out.text.erase(0, prompt.text.size());
  if (out.completion_token_count == 0)
    out.completion_token_count = static_cast<std::int64_t>(out.tokens.size());
  if (snapshot_header && !snapshot_header->empty()) {
    out.snapshot_identity = *snapshot_header;
  } else if (have_model) {
    auto at = model.rfind('@');
    if (at != std::string::npos) out.snapshot_identity = model.substr(at + 1);
  }
  return true;
}

}  // namespace

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
  out += ",\"raw_output\":true,\"stream\":false}";
}

void write_completion_body(std::string& out, std::string_view model, const Prompt& prompt,
                           const SamplingParams& p, std::optional<std::int64_t> seed) {
  write_completion_head(out, model);
  append_prompt_json(out, prompt);
  write_completion_tail(out, p, seed);
}

Completion parse_completion(std::string_view body, const Prompt& prompt,
                            const SamplingParams& params, const std::string* snapshot_header) {
  if (!params.logprobs) {
    Completion fast;
    if (parse_fast(body, prompt, params, snapshot_header, fast)) return fast;
  }
  json doc = json::parse(body.begin(), body.end(), nullptr, false);
  if (doc.is_discarded())
    bad("the body is not valid JSON (" + std::to_string(body.size()) + " bytes; truncated?)");
  if (!doc.is_object()) bad("the body is not a JSON object");
  const json& choices = field(doc, "choices", "choices");
  if (!choices.is_array() || choices.empty()) bad("field 'choices' must be a non-empty list");
  const json& c = choices[0];
  if (!c.is_object()) bad("choices[0] must be an object");

  Completion out;
  const json& text = field(c, "text", "choices[0].text");
  if (!text.is_string()) bad("choices[0].text must be a string");
  out.text = text.get<std::string>();
  auto fr = c.find("finish_reason");
  if (fr != c.end() && fr->is_string()) out.finish_reason = fr->get<std::string>();

  auto raw = c.find("raw_output");
  if (raw != c.end() && raw->is_object()) {
    if (auto it = raw->find("completion_token_ids"); it != raw->end()) {
      read_ids(*it, out.tokens, "choices[0].raw_output.completion_token_ids");
    }
    if (auto it = raw->find("prompt_token_ids"); it != raw->end()) {
      read_ids(*it, out.prompt_tokens, "choices[0].raw_output.prompt_token_ids");
    }
  }
  if (out.prompt_tokens.empty() && !prompt.is_text) out.prompt_tokens = prompt.tokens;

  std::size_t prompt_len = out.prompt_tokens.size();
  if (auto u = doc.find("usage"); u != doc.end() && u->is_object()) {
    if (auto pt = u->find("prompt_tokens");
        pt != u->end() && pt->is_number_integer() && prompt_len == 0) {
      prompt_len = pt->get<std::size_t>();
    }
    if (auto ct = u->find("completion_tokens"); ct != u->end() && ct->is_number_integer()) {
      out.completion_token_count = ct->get<std::int64_t>();
    }
  }

  if (params.logprobs) {
    auto lp = c.find("logprobs");
    if (lp == c.end() || !lp->is_object())
      bad("choices[0].logprobs is missing although logprobs were requested");
    const json& content = field(*lp, "content", "choices[0].logprobs.content");
    if (!content.is_array()) bad("choices[0].logprobs.content must be a list");
    std::size_t skip = params.echo ? std::min(prompt_len, content.size()) : 0;
    std::string completion_text;
    out.logprobs.reserve(content.size() - skip);
    out.sampling_logprobs.reserve(content.size() - skip);
    for (std::size_t k = 0; k < content.size(); ++k) {
      LogprobEntry e = read_entry(content[k], params.top_logprobs > 0 && k >= skip);
      if (k < skip) {
        out.prompt_logprobs.push_back(e.logprob);
        continue;
      }
      out.logprobs.push_back(e.logprob);
      out.sampling_logprobs.push_back(e.sampling_logprob);
      if (params.top_logprobs > 0) out.top_logprobs.push_back(std::move(e.top));
      completion_text += e.token;
    }
    if (params.echo) out.text = std::move(completion_text);
  } else if (params.echo && prompt.is_text && out.text.starts_with(prompt.text)) {
    out.text.erase(0, prompt.text.size());
  }
  if (out.completion_token_count == 0)
    out.completion_token_count = static_cast<std::int64_t>(out.tokens.size());

  if (snapshot_header && !snapshot_header->empty()) {
    out.snapshot_identity = *snapshot_header;
  } else if (auto m = doc.find("model"); m != doc.end() && m->is_string()) {
    const std::string& model = m->get_ref<const std::string&>();
    auto at = model.rfind('@');
    if (at != std::string::npos) out.snapshot_identity = model.substr(at + 1);
  }
  return out;
}

}  // namespace flare::fireworks
