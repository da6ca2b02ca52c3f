#include "fireworks/completion_codec.hpp"

#include <charconv>
#include <nlohmann/json.hpp>

#include "runtime/error.hpp"

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

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  static const char* hex = "0123456789abcdef";
  out.push_back('"');
  std::size_t run = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.substr(run, i - run));
    run = i + 1;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        out += "\\u00";
        out.push_back(hex[c >> 4]);
        out.push_back(hex[c & 15]);
    }
  }
  out.append(s.substr(run));
  out.push_back('"');
}

void write_completion_body(std::string& out, std::string_view model, const Prompt& prompt,
                           const SamplingParams& p, std::optional<std::int64_t> seed) {
  out += "{\"model\":";
  append_json_string(out, model);
  out += ",\"prompt\":";
  if (prompt.is_text) {
    append_json_string(out, prompt.text);
  } else {
    out.push_back('[');
    for (std::size_t i = 0; i < prompt.tokens.size(); ++i) {
      if (i) out.push_back(',');
      append_int(out, prompt.tokens[i]);
    }
    out.push_back(']');
  }
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
      append_json_string(out, p.stop[i]);
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

Completion parse_completion(std::string_view body, const Prompt& prompt,
                            const SamplingParams& params, const std::string* snapshot_header) {
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
