#include "fireworks/rest_call.hpp"

#include <cstdio>

#include "fireworks/api_error.hpp"
#include "fireworks/resource_registry.hpp"

namespace flare::fireworks {

std::string new_request_id() {
  static std::mt19937_64 rng{std::random_device{}()};
  char buf[32];
  std::snprintf(buf, sizeof buf, "flare-%016llx", static_cast<unsigned long long>(rng()));
  return buf;
}

RestCall::RestCall(std::shared_ptr<const Connection> conn, RestRequest request)
    : conn_(std::move(conn)), request_(std::move(request)), rng_(std::random_device{}()) {
  url_ = conn_->url_of(request_.plane) + request_.path;
  request_id_ = new_request_id();
}

std::shared_ptr<RestCall> RestCall::start(std::shared_ptr<const Connection> conn,
                                          RestRequest request) {
  auto call = std::make_shared<RestCall>(std::move(conn), std::move(request));
  call->send();
  EventLoop::instance().track(call);
  return call;
}

void RestCall::send() {
  timer_ = 0;
  ++attempts_;
  net::Request r;
  r.method = request_.method;
  r.url = url_;
  r.body = request_.body;
  r.timeout_s = request_.timeout_s > 0 ? request_.timeout_s : conn_->timeout_s;
  r.connect_timeout_s = conn_->connect_timeout_s;
  conn_->add_headers(r.headers, request_.plane, !request_.body.empty());
  r.verify_tls = conn_->verify_tls(request_.plane);
  for (const auto& [name, value] : request_.headers) r.headers.add(name, value);
  r.headers.add("x-request-id", request_id_);
  auto keep = shared_from_this();
  try {
    in_flight_ = EventLoop::instance().http().submit(
        std::move(r), [keep](net::Response* res, const Error* err) { keep->on_done(res, err); });
  } catch (const Error& e) {
    error_ = error_from_transport(e, request_.what, conn_->api_key, request_id_);
    finish();
  }
}

void RestCall::on_done(net::Response* response, const Error* error) {
  in_flight_ = 0;
  if (done_) return;
  int status = response ? response->status : 0;
  bool transport_retryable = error && error->retryable;
  if (error && (error->code == "cancelled" || error->code == "interrupted"))
    transport_retryable = false;
  RetryClass cls = classify(status, transport_retryable, request_.retry.retry_not_ready);
  if (cls != RetryClass::Permanent && may_retry(request_.retry, cls, failures_ + 1)) {
    ++failures_;
    double after = response ? retry_after_s(response->headers) : -1;
    double delay = retry_delay(request_.retry, cls, failures_, after, rng_);
    auto keep = shared_from_this();
    timer_ = EventLoop::instance().call_later(delay, [keep] { keep->send(); });
    return;
  }
  if (response) {
    response_ = std::move(*response);
    if (request_.plane == Plane::Control)
      resources::note(conn_, request_.method, request_.path, request_.body, response_.status);
  } else {
    error_ = error_from_transport(*error, request_.what, conn_->api_key, request_id_);
  }
  finish();
}

void RestCall::finish() {
  done_ = true;
}

bool RestCall::wait(double timeout_s) {
  auto keep = shared_from_this();
  return EventLoop::instance().run_until([this] { return done_; }, timeout_s);
}

void RestCall::cancel_all(const char* code) {
  if (done_) return;
  if (timer_) EventLoop::instance().cancel_timer(timer_);
  timer_ = 0;
  done_ = true;
  error_ = Error(code, request_.what + ": " + code);
  if (in_flight_) EventLoop::instance().http().cancel(in_flight_);
}

}  // namespace flare::fireworks
