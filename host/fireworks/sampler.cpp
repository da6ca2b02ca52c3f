#include "fireworks/sampler.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "fireworks/api_error.hpp"
#include "fireworks/redact.hpp"
#include "fireworks/rest_call.hpp"

namespace flare::fireworks {
namespace {

double header_seconds(const net::Headers& headers, const char* name) {
  const std::string* v = headers.find(name);
  if (!v) return -1;
  char* end = nullptr;
  double s = std::strtod(v->c_str(), &end);
  return end == v->c_str() ? -1 : s;
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
    : conn_(std::move(conn)), options_(std::move(options)), rng_(std::random_device{}()) {
  url_ = conn_->inference_url + "/inference/v1/completions";
  conn_->add_headers(base_headers_, Plane::Inference, true);
  verify_tls_ = conn_->verify_tls(Plane::Inference);
  if (options_.concurrency < 1) throw Error("invalid_argument", "concurrency must be >= 1");
  if (options_.adaptive_min < 1 || options_.adaptive_max < options_.adaptive_min)
    throw Error("invalid_argument", "adaptive concurrency bounds must satisfy 1 <= min <= max");
  limit_ = options_.adaptive ? std::clamp<double>(options_.adaptive_initial, options_.adaptive_min,
                                                  options_.adaptive_max)
                             : options_.concurrency;
}

std::size_t Sampler::cap() const {
  return static_cast<std::size_t>(std::max(1.0, std::floor(limit_)));
}

SamplerStats Sampler::stats() const {
  SamplerStats s = stats_;
  s.limit = limit_;
  s.in_flight = in_flight_;
  return s;
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

void Sampler::note_success(const net::Response& response) {
  if (!options_.adaptive) return;
  double queued = std::max(header_seconds(response.headers, "fireworks-prefill-queue-duration"),
                           header_seconds(response.headers, "fireworks-generation-queue-duration"));
  if (queued > options_.queue_target_s) {
    double now = EventLoop::now();
    if (now - last_decrease_ > 0.05) {
      limit_ = std::max<double>(options_.adaptive_min, limit_ * 0.9);
      last_decrease_ = now;
    }
    return;
  }
  limit_ = std::min<double>(options_.adaptive_max, limit_ + 1.0 / limit_);
}

void Sampler::note_overload() {
  ++stats_.rate_limited;
  if (!options_.adaptive) return;
  double now = EventLoop::now();
  if (now - last_decrease_ < 0.05) return;  // one cut per burst of 429s
  limit_ = std::max<double>(options_.adaptive_min, limit_ * 0.5);
  last_decrease_ = now;
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
      batch->results_[index].completion = parse_completion(
          response->body, batch->prompts_[index / batch->n_], batch->params_, snapshot);
      note_success(*response);
      batch->finish_item(index);
      dispatch();
      return;
    } catch (const Error& e) {
      failure = Error(e.code, describe(*batch, index) + ": " + e.what(), 200, true);
    }
  } else if (response) {
    if (status == 429) note_overload();
    retry_after = retry_after_s(response->headers);
    std::string rid = batch->id_prefix_ + std::to_string(index);
    failure = error_from_response(*response, describe(*batch, index), conn_->api_key, rid);
  } else {
    failure = error_from_transport(*error, describe(*batch, index), conn_->api_key);
  }

  bool transient = failure->code == "bad_response" || (!response && failure->retryable);
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
