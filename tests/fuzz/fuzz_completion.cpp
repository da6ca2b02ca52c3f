// libFuzzer target: the completions codec (host/fireworks/completion_codec.cpp).
//  - parse_completion on any response body, with the options a sampler asks
//    for taken from the first input byte: it returns or throws flare::Error,
//    nothing else. A body it accepts reads the same once re-serialized
//    canonically (this compares the scanner fast path with the DOM parser);
//    with a `stream` option (server-sent events) the body is parsed as a stream.
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

// SSE responses are parsed when the codec has the option.
template <class P>
void set_stream(P& params, bool on) {
  if constexpr (requires { params.stream = on; }) params.stream = on;
}
template <class P>
bool is_stream(const P& params) {
  if constexpr (requires { bool(params.stream); }) return params.stream;
  return false;
}

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
  return a.text == b.text && a.tokens == b.tokens && eq(a.logprobs, b.logprobs) &&
         eq(a.sampling_logprobs, b.sampling_logprobs) && a.finish_reason == b.finish_reason &&
         a.snapshot_identity == b.snapshot_identity && a.prompt_tokens == b.prompt_tokens &&
         eq(a.prompt_logprobs, b.prompt_logprobs) &&
         a.completion_token_count == b.completion_token_count &&
         a.top_logprobs.size() == b.top_logprobs.size();
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
  set_stream(params, flags & 16);
  const std::string header = "snap-1";
  const std::string* snapshot_header = flags & 32 ? &header : nullptr;

  Completion first;
  if (parse(body, prompt, params, snapshot_header, first) && !is_stream(params)) {
    json doc = json::parse(body.begin(), body.end(), nullptr, false);
    if (!doc.is_discarded() && !has_duplicate_keys(body)) {
      std::string canonical = doc.dump(flags & 64 ? 1 : -1);
      Completion again;
      if (!parse(canonical, prompt, params, snapshot_header, again) || !same(first, again))
        std::abort();
    }
  }

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
