// libFuzzer target: the completions codec (host/fireworks/completion_codec.cpp).
//  - parse_completion on any response body, with the options a sampler asks
//    for taken from the first input byte: it returns or throws flare::Error,
//    nothing else. A body it accepts reads the same once re-serialized
//    canonically (this compares the scanner fast path with the DOM parser),
//    a plain body as a server-sent event stream (each data: line re-serialized).
//  - write_completion_body with the rest of the input as a text prompt: the
//    request is valid JSON carrying that prompt, whenever the prompt is UTF-8.
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fireworks/completion_codec.hpp"
#include "runtime/error.hpp"

using namespace flare::fireworks;
using json = nlohmann::json;

namespace {

// True when an object of the document repeats a key (readers may keep either value).
bool has_duplicate_keys(std::string_view body) {
  struct Sax : json::json_sax_t {
    std::vector<std::vector<std::string>> keys;
    bool dup = false;
    bool null() override { return true; }
    bool boolean(bool) override { return true; }
    bool number_integer(number_integer_t) override { return true; }
    bool number_unsigned(number_unsigned_t) override { return true; }
    bool number_float(number_float_t, const string_t&) override { return true; }
    bool string(string_t&) override { return true; }
    bool binary(binary_t&) override { return true; }
    bool start_object(std::size_t) override { return keys.emplace_back(), true; }
    bool key(string_t& k) override {
      for (const auto& seen : keys.back()) dup = dup || seen == k;
      keys.back().push_back(k);
      return true;
    }
    bool end_object() override { return keys.pop_back(), true; }
    bool start_array(std::size_t) override { return true; }
    bool end_array() override { return true; }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
      return false;
    }
  } sax;
  json::sax_parse(body.begin(), body.end(), &sax);
  return sax.dup;
}

bool same(const Completion& a, const Completion& b) {
  auto eq = [](const std::vector<double>& x, const std::vector<double>& y) {
    if (x.size() != y.size()) return false;
    for (std::size_t i = 0; i < x.size(); ++i)
      if (x[i] != y[i] && !(x[i] != x[i] && y[i] != y[i])) return false;
    return true;
  };
  const ServerMetrics &m = a.metrics, &n = b.metrics;
  return a.text == b.text && a.tokens == b.tokens && eq(a.logprobs, b.logprobs) &&
         eq(a.sampling_logprobs, b.sampling_logprobs) &&
         a.top_logprobs.size() == b.top_logprobs.size() && a.logprobs_echoed == b.logprobs_echoed &&
         a.sampling_source == b.sampling_source && a.finish_reason == b.finish_reason &&
         a.snapshot_identity == b.snapshot_identity && a.prompt_tokens == b.prompt_tokens &&
         a.completion_token_count == b.completion_token_count &&
         a.have_perf_metrics == b.have_perf_metrics &&
         m.num_concurrent_requests == n.num_concurrent_requests &&
         m.prefill_queue_duration == n.prefill_queue_duration &&
         m.generation_queue_duration == n.generation_queue_duration &&
         m.server_ttft == n.server_ttft && m.cached_prompt_tokens == n.cached_prompt_tokens &&
         m.prompt_tokens == n.prompt_tokens && m.server_processing_time == n.server_processing_time;
}

// The body with each JSON document re-serialized canonically (a plain body, or
// each "data: " line of a stream); "" when a document does not parse, holds a NUL
// byte or repeats a key.
std::string canonical(std::string_view body, bool stream, int indent) {
  auto one = [&](std::string_view text) -> std::string {
    // nlohmann stops at a NUL byte; the codec refuses such a document whole.
    if (text.find('\0') != std::string_view::npos) return "";
    json doc = json::parse(text.begin(), text.end(), nullptr, false);
    if (doc.is_discarded() || has_duplicate_keys(text)) return "";
    return doc.dump(indent);
  };
  if (!stream) return one(body);
  std::string out;
  std::size_t at = 0;
  while (at < body.size()) {
    std::size_t nl = body.find('\n', at);
    std::size_t stop = nl == std::string_view::npos ? body.size() : nl + 1;
    std::string_view line = body.substr(at, stop - at), content = line;
    at = stop;
    while (!content.empty() && (content.back() == '\n' || content.back() == '\r'))
      content.remove_suffix(1);
    if (!content.starts_with("data: ") || content == "data: [DONE]") {
      out += line;
      continue;
    }
    std::string doc = one(content.substr(6));
    if (doc.empty()) return "";
    out += "data: " + doc;
    out += line.substr(content.size());
  }
  return out;
}

bool parse(std::string_view body, const Prompt& prompt, const SamplingParams& params,
           const std::string* header, Completion& out) {
  try {
    out = parse_completion(body, prompt, params, header);
    return true;
  } catch (const flare::Error& e) {
    if (e.code.empty() || std::string(e.what()).empty()) std::abort();
    return false;
  }
  // Any other exception escapes and is reported as a crash.
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::uint8_t flags = data[0];
  std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);

  Prompt prompt;
  prompt.is_text = flags & 1;
  if (prompt.is_text) {
    prompt.text = "Hi";
  } else {
    prompt.tokens = {72, 105};
  }
  SamplingParams params;
  params.logprobs = flags & 2;
  params.echo = flags & 4;
  params.top_logprobs = flags & 8 ? 2 : 0;
  params.stream = flags & 16;
  const std::string header = "snap-1";
  const std::string* snapshot_header = flags & 32 ? &header : nullptr;

  Completion first;
  if (parse(body, prompt, params, snapshot_header, first)) {
    std::string again_body = canonical(body, params.stream, flags & 64 && !params.stream ? 1 : -1);
    Completion again;
    if (!again_body.empty() &&
        (!parse(again_body, prompt, params, snapshot_header, again) || !same(first, again)))
      std::abort();
  }

  // A server metric header of these bytes ("name:value").
  ServerMetrics metrics;
  if (auto colon = body.find(':'); colon != std::string_view::npos)
    set_metric(metrics, body.substr(0, colon), body.substr(colon + 1));

  // The request body for a prompt of these bytes.
  Prompt text_prompt;
  text_prompt.is_text = true;
  text_prompt.text.assign(body);
  bool utf8 = true;
  try {
    (void)json(text_prompt.text).dump();
  } catch (const json::type_error&) {
    utf8 = false;
  }
  params.stop = {text_prompt.text};
  std::string request;
  write_completion_body(request, "accounts/a/models/m", text_prompt, params, std::int64_t{7});
  if (utf8) {
    json req = json::parse(request, nullptr, false);
    if (req.is_discarded() || req["prompt"] != text_prompt.text || req["n"] != 1) std::abort();
  }
  return 0;
}
