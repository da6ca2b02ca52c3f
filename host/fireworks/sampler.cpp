#include "fireworks/sampler.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "fireworks/api_error.hpp"
#include "fireworks/redact.hpp"
#include "fireworks/rest_call.hpp"

namespace flare::fireworks {
namespace {

// The SDK's ServerMetrics.from_headers: its header names, here also accepted
// with a "fireworks-" prefix and in any case.
void read_metric_headers(const net::Headers& headers, ServerMetrics& m) {
  constexpr std::string_view kPrefix = "fireworks-";
  char lower[64];
  for (const auto& [name, value] : headers.items) {
    std::string_view n = name;
    if (n.size() > sizeof lower || n.size() < 13) continue;  // the shortest is "prompt-tokens"
    for (std::size_t i = 0; i < n.size(); ++i)
      lower[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(n[i])));
    std::string_view l(lower, n.size());
    if (l.starts_with(kPrefix)) l.remove_prefix(kPrefix.size());
    set_metric(m, l, value);
  }
}

}  // namespace

bool SampleBatch::wait(double timeout_s) {
  auto keep = shared_from_this();
  return EventLoop::instance().run_until([this] { return done(); }, timeout_s);
}

void SampleBatch::finish_item(std::size_t index) {
  Item& item = items_[index];
  if (item.final) return;
  item.final = true;
  --remaining_;
}

void SampleBatch::cancel_all(const char* code) {
  auto keep = shared_from_this();
  for (std::size_t i = 0; i < items_.size(); ++i) {
    Item& item = items_[i];
    if (item.final) continue;
    if (item.timer) EventLoop::instance().cancel_timer(item.timer);
    item.timer = 0;
    results_[i].error = Error(code, sampler_->describe(*this, i) + ": " + code);
    finish_item(i);
    if (item.in_flight) {
      net::RequestId id = item.in_flight;
      item.in_flight = 0;
      EventLoop::instance().http().cancel(id);  // its callback sees a final item
    }
  }
}

std::shared_ptr<Sampler> Sampler::create(std::shared_ptr<const Connection> conn,
                                         SamplerOptions options) {
  return std::make_shared<Sampler>(std::move(conn), std::move(options));
}

Sampler::Sampler(std::shared_ptr<const Connection> conn, SamplerOptions options)
    : conn_(std::move(conn)),
      options_(std::move(options)),
      controller_(options_.concurrency),
      rng_(std::random_device{}()) {
  url_ = conn_->inference_url + "/inference/v1/completions";
  conn_->add_headers(base_headers_, Plane::Inference, true);
  verify_tls_ = conn_->verify_tls(Plane::Inference);
}

std::size_t Sampler::cap() const {
  return static_cast<std::size_t>(controller_.window_size());
}

SamplerStats Sampler::stats() const {
  SamplerStats s = stats_;
  s.limit = controller_.window_size();
  s.in_flight = in_flight_;
  return s;
}

StepSummary Sampler::step_completed() {
  StepSummary out = controller_.step_completed();
  out.emplace_back("completions", static_cast<double>(step_.completions));
  auto series = [&](const char* name, const StepMetrics::Series& s) {
    if (!s.count) return;
    out.emplace_back(std::string("avg_") + name, s.sum / static_cast<double>(s.count));
    out.emplace_back(std::string("max_") + name, s.max);
  };
  series("prefill_queue_duration", step_.prefill_queue);
  series("generation_queue_duration", step_.generation_queue);
  series("server_ttft", step_.server_ttft);
  series("client_ttft", step_.client_ttft);
  series("server_processing_time", step_.processing);
  series("num_concurrent_requests", step_.concurrent);
  if (step_.prompt_tokens > 0)
    out.emplace_back("cached_prompt_fraction", static_cast<double>(step_.cached_prompt_tokens) /
                                                   static_cast<double>(step_.prompt_tokens));
  step_ = StepMetrics();
  return out;
}

void Sampler::warn_once(bool& given, const std::string& text) {
  if (given) return;
  given = true;
  stats_.warnings.push_back(text);
  std::fprintf(stderr, "flare: warning: %s\n", text.c_str());
}

std::string Sampler::describe(const SampleBatch& batch, std::size_t index) const {
  return "completion for prompt " + std::to_string(index / batch.n_ + 1) + " (sample " +
         std::to_string(index % batch.n_ + 1) + " of " + std::to_string(batch.n_) + ") on " +
         options_.model;
}

std::shared_ptr<SampleBatch> Sampler::submit(std::vector<Prompt> prompts, SamplingParams params,
                                             int n, bool raise_on_error) {
  if (n < 1) throw Error("invalid_argument", "n must be >= 1");
  auto batch = std::shared_ptr<SampleBatch>(new SampleBatch());
  batch->sampler_ = shared_from_this();
  batch->prompt_count_ = static_cast<int>(prompts.size());
  batch->prompts_ = std::move(prompts);
  batch->params_ = std::move(params);
  batch->n_ = n;
  batch->raise_on_error_ = raise_on_error;
  batch->id_prefix_ = new_request_id() + "-";
  write_completion_head(batch->body_head_, options_.model);
  write_completion_tail(batch->body_tail_, batch->params_, std::nullopt);
  std::size_t total = batch->prompts_.size() * static_cast<std::size_t>(n);
  batch->items_.resize(total);
  batch->results_.resize(total);
  batch->remaining_ = total;
  for (std::size_t i = 0; i < total; ++i) queue_.push_back({batch, i});
  EventLoop::instance().track(batch);
  dispatch();
  return batch;
}

void Sampler::dispatch() {
  while (in_flight_ < cap() && !queue_.empty()) {
    Pending p = std::move(queue_.front());
    queue_.pop_front();
    if (p.batch->items_[p.index].final) continue;
    send(p.batch, p.index);
  }
}

void Sampler::send(const std::shared_ptr<SampleBatch>& batch, std::size_t index) {
  SampleBatch::Item& item = batch->items_[index];
  const Prompt& prompt = batch->prompts_[index / batch->n_];
  std::optional<std::int64_t> seed;
  if (batch->params_.seed)
    seed = *batch->params_.seed + static_cast<std::int64_t>(index % batch->n_);
  // The request is written into the client's reused storage: once warm, no
  // string of it allocates (the headers that never change are copied from
  // base_headers_ into strings that keep their capacity).
  auto fill = [&](net::Request& r) {
    r.method.assign("POST");
    r.url.assign(url_);
    r.body.assign(batch->body_head_);
    append_prompt_json(r.body, prompt);
    if (seed) {
      write_completion_tail(r.body, batch->params_, seed);
    } else {
      r.body.append(batch->body_tail_);
    }
    r.timeout_s = options_.timeout_s;
    r.connect_timeout_s = conn_->connect_timeout_s;
    r.verify_tls = verify_tls_;
    auto& items = r.headers.items;
    const auto& base = base_headers_.items;
    items.resize(base.size() + 1);
    for (std::size_t i = 0; i < base.size(); ++i) {
      items[i].first.assign(base[i].first);
      items[i].second.assign(base[i].second);
    }
    items.back().first.assign("x-request-id");
    std::string& rid = items.back().second;
    rid.assign(batch->id_prefix_);
    char digits[24];
    auto end = std::to_chars(digits, digits + sizeof digits, index).ptr;
    rid.append(digits, end);
  };
  ++item.attempts;
  ++stats_.requests;
  ++in_flight_;
  auto self = shared_from_this();
  try {
    item.in_flight = EventLoop::instance().http().submit_with(
        fill, [self, batch, index](net::Response* res, const Error* err) {
          self->on_done(batch, index, res, err);
        });
  } catch (const Error& e) {
    --in_flight_;
    fail_item(batch, index, error_from_transport(e, describe(*batch, index), conn_->api_key));
  }
}

// The request's server metrics (the stream's perf_metrics when it sent them,
// else the headers, as the SDK prefers them), the client's time to the first
// streamed byte, fed to the controller and the step's summary.
void Sampler::note_metrics(const net::Response& response, Completion& c, bool streamed) {
  ServerMetrics& m = c.metrics;
  if (!c.have_perf_metrics) read_metric_headers(response.headers, m);
  if (streamed) m.client_ttft = response.first_body_byte_s;
  controller_.release(&m);
  ++step_.completions;
  step_.prefill_queue.add(m.prefill_queue_duration);
  step_.generation_queue.add(m.generation_queue_duration);
  step_.server_ttft.add(m.server_ttft);
  step_.client_ttft.add(m.client_ttft);
  step_.processing.add(m.server_processing_time);
  step_.concurrent.add(static_cast<double>(m.num_concurrent_requests));
  if (m.cached_prompt_tokens >= 0) step_.cached_prompt_tokens += m.cached_prompt_tokens;
  if (m.prompt_tokens >= 0) step_.prompt_tokens += m.prompt_tokens;
}

void Sampler::fail_item(const std::shared_ptr<SampleBatch>& batch, std::size_t index, Error error) {
  batch->results_[index].error = error;
  batch->finish_item(index);
  if (batch->raise_on_error_ && !batch->failure_) {
    batch->failure_ = std::move(error);
    batch->cancel_all("cancelled");
  }
}

void Sampler::on_done(const std::shared_ptr<SampleBatch>& batch, std::size_t index,
                      net::Response* response, const Error* error) {
  --in_flight_;
  SampleBatch::Item& item = batch->items_[index];
  item.in_flight = 0;
  if (item.final) {  // cancelled meanwhile
    dispatch();
    return;
  }
  int status = response ? response->status : 0;
  std::optional<Error> failure;
  double retry_after = -1;
  if (response && status == 200) {
    try {
      const std::string* snapshot = response->headers.find("fireworks-snapshot-identity");
      Completion& c = batch->results_[index].completion;
      c = parse_completion(response->body, batch->prompts_[index / batch->n_], batch->params_,
                           snapshot);
      note_metrics(*response, c, batch->params_.stream);
      if (c.sampling_source == SamplingLogprobs::Fallback) {
        warn_once(warned_fallback_,
                  "the deployment's answers omit logprobs.content[].sampling_logprob; using the "
                  "raw logprobs instead, which are the same only under full-distribution "
                  "sampling (temperature=1, top_p=1, top_k=0), as this request samples");
      } else if (c.sampling_source == SamplingLogprobs::Missing) {
        warn_once(warned_missing_,
                  "the deployment's answers omit logprobs.content[].sampling_logprob and this "
                  "request changes the sampling distribution (temperature, top_p or top_k), so "
                  "raw logprobs are not the behaviour policy's: sampling_logprobs left empty");
      }
      batch->finish_item(index);
      dispatch();
      return;
    } catch (const Error& e) {
      failure = Error(e.code, describe(*batch, index) + ": " + e.what(), 200, e.retryable);
    }
    controller_.release(nullptr);
  } else if (response) {
    controller_.release(nullptr);
    if (status == 429) ++stats_.rate_limited;
    retry_after = retry_after_s(response->headers);
    std::string rid = batch->id_prefix_ + std::to_string(index);
    failure = error_from_response(*response, describe(*batch, index), conn_->api_key, rid);
  } else {
    controller_.release(nullptr);
    failure = error_from_transport(*error, describe(*batch, index), conn_->api_key);
  }

  bool transient = (failure->code == "bad_response" || !response) && failure->retryable;
  RetryClass cls = response && status != 200
                       ? classify(status, false, options_.retry.retry_not_ready)
                       : (transient ? RetryClass::Transient : RetryClass::Permanent);
  int failures =
      cls == RetryClass::NotReady ? ++item.not_ready_failures : ++item.transient_failures;
  if (may_retry(options_.retry, cls, failures)) {
    ++stats_.retries;
    double delay = retry_delay(options_.retry, cls, failures, retry_after, rng_);
    auto self = shared_from_this();
    item.timer = EventLoop::instance().call_later(delay, [self, batch, index] {
      batch->items_[index].timer = 0;
      if (batch->items_[index].final) return;
      self->queue_.push_front({batch, index});
      self->dispatch();
    });
  } else {
    if (cls != RetryClass::Permanent) {
      failure = Error(failure->code,
                      std::string(failure->what()) + " [gave up after " +
                          std::to_string(item.attempts) + " attempts]",
                      failure->status, failure->retryable, failure->request_id);
    }
    fail_item(batch, index, std::move(*failure));
  }
  dispatch();
}

}  // namespace flare::fireworks
