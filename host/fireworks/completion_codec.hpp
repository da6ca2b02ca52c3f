#pragma once
// The completions wire format (POST /inference/v1/completions): request bodies
// written directly as JSON text, and responses -- one JSON body, or a stream
// of server-sent events assembled as the Fireworks SDK's
// async_completions_stream assembles them -- read into plain structs. One
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
  bool stream = false;            // SSE, with perf_metrics_in_response (as the SDK asks)
};

// The server metrics the SDK's ServerMetrics holds; < 0 = not reported.
struct ServerMetrics {
  std::int64_t num_concurrent_requests = -1;
  double prefill_queue_duration = -1;
  double generation_queue_duration = -1;
  double server_ttft = -1;
  std::int64_t cached_prompt_tokens = -1;
  std::int64_t prompt_tokens = -1;
  double server_processing_time = -1;
  double client_ttft = -1;  // measured by the client, streaming only
};

// Sets the metric `name` (the SDK's header name, e.g. "prefill-queue-duration")
// from its text; false when the name is not one of them. A value that does
// not parse leaves the metric unreported, as the SDK's from_headers does.
bool set_metric(ServerMetrics& m, std::string_view name, std::string_view value);

struct TopLogprob {
  int token_id = 0;
  double logprob = 0;
};

// How sampling_logprobs were obtained when the server left some out.
enum class SamplingLogprobs {
  Sent,      // every entry had sampling_logprob
  Fallback,  // none had it, and at T=1, top_p=1, top_k=0 the raw logprobs are them
  Missing,   // not (all) sent and not derivable: left empty
};

// One sample, as the SDK's SampledCompletion: with echo the logprob lists are
// training-aligned (P + C - 1 entries: every token after the first) and
// logprobs_echoed is set; else they cover the completion only.
struct Completion {
  std::string text;              // as the server sent it (with echo, the prompt's text first)
  std::vector<int> tokens;       // completion token ids (the prompt prefix removed with echo)
  std::vector<double> logprobs;  // inference_logprobs; empty unless asked
  std::vector<double> sampling_logprobs;              // idem
  std::vector<std::vector<TopLogprob>> top_logprobs;  // idem, when top_logprobs > 0
  bool logprobs_echoed = false;
  SamplingLogprobs sampling_source = SamplingLogprobs::Sent;
  std::string finish_reason;
  std::string snapshot_identity;
  std::vector<int> prompt_tokens;
  std::int64_t completion_token_count = 0;
  ServerMetrics metrics;  // from perf_metrics of a stream (headers are the sampler's part)
  bool have_perf_metrics = false;
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

// Parses a 200 response: a JSON body, or with params.stream the SSE stream.
// `snapshot_header` is the fireworks-snapshot-identity header when present
// (else the snapshot is read from "model" after '@'). Throws flare::Error
// "bad_response" naming the missing or malformed field: retryable for a body
// cut short (a stream without [DONE], finish_reason or raw_output is the
// SDK's SSE truncation), not for a well-formed answer that breaks the
// protocol (no raw_output token ids; with echo, ids without the prompt).
Completion parse_completion(std::string_view body, const Prompt& prompt,
                            const SamplingParams& params, const std::string* snapshot_header);

}  // namespace flare::fireworks
