#pragma once
// The completions wire format (POST /inference/v1/completions): request bodies
// written directly as JSON text, and responses read into plain structs. One
// sample per request (n = 1); the sampler fans a prompt out into n requests.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flare::fireworks {

struct Prompt {
  bool is_text = false;
  std::string text;
  std::vector<int> tokens;
};

struct SamplingParams {
  int max_tokens = 16;
  double temperature = 1.0;
  double top_p = 1.0;
  int top_k = 0;
  std::vector<std::string> stop;
  std::optional<std::int64_t> seed;  // sample j of a prompt uses seed + j
  bool logprobs = false;
  int top_logprobs = 0;
  bool echo = false;
  int prompt_cache_max_len = -1;  // < 0 = not sent
};

struct TopLogprob {
  int token_id = 0;
  double logprob = 0;
};

struct Completion {
  std::string text;
  std::vector<int> tokens;
  std::vector<double> logprobs;                       // empty unless logprobs were asked for
  std::vector<double> sampling_logprobs;              // idem
  std::vector<std::vector<TopLogprob>> top_logprobs;  // idem, when top_logprobs > 0
  std::string finish_reason;
  std::string snapshot_identity;
  std::vector<int> prompt_tokens;
  std::vector<double> prompt_logprobs;  // with echo
  std::int64_t completion_token_count = 0;
};

// Appends the JSON body of one n=1 request to `out`.
void write_completion_body(std::string& out, std::string_view model, const Prompt& prompt,
                           const SamplingParams& params, std::optional<std::int64_t> seed);
// The same body in three parts (head + prompt + tail), so that a batch writes
// the parts every request shares once.
void write_completion_head(std::string& out, std::string_view model);
void append_prompt_json(std::string& out, const Prompt& prompt);
void write_completion_tail(std::string& out, const SamplingParams& params,
                           std::optional<std::int64_t> seed);

// Parses a 200 response. `snapshot_header` is the fireworks-snapshot-identity
// header when present (else the snapshot is read from "model" after '@').
// Throws flare::Error "bad_response" naming the missing or malformed field.
Completion parse_completion(std::string_view body, const Prompt& prompt,
                            const SamplingParams& params, const std::string* snapshot_header);

}  // namespace flare::fireworks
