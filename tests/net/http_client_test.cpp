#include "net/http_client.hpp"

#include <doctest/doctest.h>

#include <csignal>
#include <optional>
#include <thread>
#include <vector>

#include "runtime/interrupt.hpp"
#include "test_server.hpp"

using flare::net::HttpClient;
using flare::net::Request;
using flare::net::RequestId;
using flare::net::Response;

namespace {

struct Outcome {
  bool called = false;
  std::optional<Response> response;
  std::optional<flare::Error> error;
};

flare::net::DoneCallback record_into(Outcome& out) {
  return [&out](Response* r, const flare::Error* e) {
    out.called = true;
    if (r) out.response = std::move(*r);
    if (e) out.error = *e;
  };
}

Outcome perform(HttpClient& client, Request request) {
  Outcome out;
  RequestId id = client.submit(std::move(request), record_into(out));
  client.wait(id);
  return out;
}

Request get(const std::string& url) {
  Request r;
  r.url = url;
  return r;
}

}  // namespace

TEST_CASE("GET returns status, body and headers looked up case-insensitively") {
  TestServer server;
  HttpClient client;
  auto out = perform(client, get(server.url("/hello")));
  REQUIRE(out.response);
  CHECK(out.response->status == 200);
  CHECK(out.response->body == "hello");
  REQUIRE(out.response->headers.find("x-test") != nullptr);
  CHECK(*out.response->headers.find("X-TEST") == "yes");
  CHECK(out.response->headers.find("x-absent") == nullptr);
  CHECK(out.response->total_s > 0);
}

TEST_CASE("a missing route is a response with its status, not an error") {
  TestServer server;
  HttpClient client;
  auto out = perform(client, get(server.url("/nothing-here")));
  REQUIRE(out.response);
  CHECK(out.response->status == 404);
  CHECK_FALSE(out.error);
}

TEST_CASE("methods, request body and request headers reach the server") {
  TestServer server;
  HttpClient client;
  for (std::string method : {"POST", "PUT", "PATCH", "DELETE"}) {
    Request r = get(server.url("/echo"));
    r.method = method;
    r.body = "payload for " + method;
    r.headers.add("X-Probe", "probe-value");
    r.headers.add("Content-Type", "application/json");
    auto out = perform(client, r);
    REQUIRE(out.response);
    CHECK(out.response->status == 200);
    CHECK(out.response->body == "payload for " + method);
    CHECK(*out.response->headers.find("x-method") == method);
    CHECK(*out.response->headers.find("x-seen-header") == "probe-value");
  }
}

TEST_CASE("HEAD gets headers only, and GET may carry a body") {
  TestServer server;
  HttpClient client;
  Request head = get(server.url("/hello"));
  head.method = "HEAD";
  auto h = perform(client, head);
  REQUIRE(h.response);
  CHECK(h.response->status == 200);
  CHECK(h.response->body.empty());
  CHECK(*h.response->headers.find("x-test") == "yes");

  Request with_body = get(server.url("/echo"));
  with_body.body = "query";
  auto g = perform(client, with_body);
  REQUIRE(g.response);
  CHECK(*g.response->headers.find("x-method") == "GET");
  CHECK(*g.response->headers.find("x-content-length") == "5");
}

TEST_CASE("a callback that throws does not break the client") {
  TestServer server;
  HttpClient client;
  RequestId id = client.submit(get(server.url("/hello")), [](Response*, const flare::Error*) {
    throw std::runtime_error("from the callback");
  });
  CHECK_THROWS_WITH_AS(client.wait(id), "from the callback", std::runtime_error);
  CHECK_FALSE(client.in_flight(id));
  CHECK(client.in_flight_count() == 0);
  auto out = perform(client, get(server.url("/hello")));
  REQUIRE(out.response);
  CHECK(out.response->body == "hello");
}

TEST_CASE("a large body arrives intact in both directions") {
  TestServer server;
  HttpClient client;
  Request r = get(server.url("/echo"));
  r.method = "POST";
  r.body.resize(3 << 20);
  for (std::size_t i = 0; i < r.body.size(); ++i) r.body[i] = static_cast<char>('a' + i % 26);
  std::string sent = r.body;
  auto out = perform(client, r);
  REQUIRE(out.response);
  CHECK(out.response->status == 200);
  CHECK(out.response->body.size() == sent.size());
  CHECK((out.response->body == sent));
}

TEST_CASE("the callback runs inside wait, not at submit") {
  TestServer server;
  HttpClient client;
  Outcome out;
  RequestId id = client.submit(get(server.url("/hello")), record_into(out));
  CHECK_FALSE(out.called);
  CHECK(client.in_flight(id));
  client.wait(id);
  CHECK(out.called);
  CHECK_FALSE(client.in_flight(id));
  client.wait(id);  // finished ids return at once
}

TEST_CASE("sequential requests reuse one keep-alive connection") {
  TestServer server;
  HttpClient client;
  for (int i = 0; i < 20; ++i) {
    auto out = perform(client, get(server.url("/hello")));
    REQUIRE(out.response);
    CHECK(out.response->status == 200);
  }
  CHECK(server.distinct_client_ports() == 1);
  CHECK(client.stats().connections == 1);
  CHECK(client.stats().requests == 20);
}

TEST_CASE("100 requests are in flight at once and all finish") {
  TestServer server;
  HttpClient client;
  const int n = 100;
  std::vector<Outcome> outs(n);
  std::vector<RequestId> ids;
  for (int i = 0; i < n; ++i)
    ids.push_back(client.submit(get(server.url("/gather?n=100")), record_into(outs[i])));
  CHECK(client.in_flight_count() == n);
  client.wait_all(ids);
  CHECK(server.peak_concurrency() == n);
  for (auto& out : outs) {
    REQUIRE(out.response);
    CHECK(out.response->body == "gathered");
  }
  CHECK(client.in_flight_count() == 0);
}

TEST_CASE("max_host_connections caps the connections to one host") {
  TestServer server;
  flare::net::ClientOptions options;
  options.max_host_connections = 4;
  HttpClient client(options);
  std::vector<Outcome> outs(12);
  std::vector<RequestId> ids;
  for (auto& out : outs)
    ids.push_back(client.submit(get(server.url("/slow?ms=30")), record_into(out)));
  client.wait_all(ids);
  CHECK(server.peak_concurrency() == 4);
  for (auto& out : outs) CHECK(out.response->status == 200);
}

TEST_CASE("a callback may submit another request") {
  TestServer server;
  HttpClient client;
  Outcome second;
  RequestId second_id = 0;
  Outcome first;
  RequestId first_id =
      client.submit(get(server.url("/hello")), [&](Response* r, const flare::Error*) {
        first.called = true;
        first.response = std::move(*r);
        second_id = client.submit(get(server.url("/echo")), record_into(second));
      });
  client.wait(first_id);
  REQUIRE(second_id != 0);
  client.wait(second_id);
  CHECK(first.response->body == "hello");
  CHECK(second.response->status == 200);
}

TEST_CASE("a slow answer becomes a retryable timeout error") {
  TestServer server;
  HttpClient client;
  Request r = get(server.url("/slow?ms=3000"));
  r.timeout_s = 0.2;
  auto out = perform(client, r);
  CHECK_FALSE(out.response);
  REQUIRE(out.error);
  CHECK(out.error->code == "timeout");
  CHECK(out.error->retryable);
  CHECK(std::string(out.error->what()).find("GET " + server.url("/slow?ms=3000")) == 0);
}

TEST_CASE("connection refused becomes a retryable connect_failed error") {
  HttpClient client;
  std::string url = "http://127.0.0.1:" + std::to_string(closed_port()) + "/x";
  auto out = perform(client, get(url));
  REQUIRE(out.error);
  CHECK(out.error->code == "connect_failed");
  CHECK(out.error->retryable);
  CHECK(std::string(out.error->what()).find("GET " + url) == 0);
}

TEST_CASE("an unresolvable host becomes resolve_failed") {
  HttpClient client;
  auto out = perform(client, get("http://no-such-host.invalid/x"));
  REQUIRE(out.error);
  CHECK(out.error->code == "resolve_failed");
}

TEST_CASE("cancel runs the callback at once with a cancelled error") {
  TestServer server;
  HttpClient client;
  Outcome out;
  RequestId id = client.submit(get(server.url("/slow?ms=3000")), record_into(out));
  client.run_until([] { return false; }, 0.05);
  client.cancel(id);
  CHECK(out.called);
  REQUIRE(out.error);
  CHECK(out.error->code == "cancelled");
  CHECK_FALSE(client.in_flight(id));
  client.cancel(id);  // a second cancel is ignored
}

TEST_CASE("run_until returns false when the time is up") {
  TestServer server;
  HttpClient client;
  Outcome out;
  RequestId id = client.submit(get(server.url("/slow?ms=3000")), record_into(out));
  CHECK_FALSE(client.run_until([&] { return out.called; }, 0.05));
  client.cancel(id);
}

TEST_CASE("SIGINT during a wait raises Interrupted and cancels the awaited request") {
  TestServer server;
  HttpClient client;
  flare::interrupt::clear();
  flare::interrupt::reset_count();
  Outcome out;
  RequestId id = client.submit(get(server.url("/slow?ms=10000")), record_into(out));
  std::thread signaller([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    flare::interrupt::raise_for_test(SIGINT);
  });
  CHECK_THROWS_AS(client.wait(id), flare::Interrupted);
  signaller.join();
  CHECK_FALSE(client.in_flight(id));
  REQUIRE(out.error);
  CHECK(out.error->code == "interrupted");
  CHECK_FALSE(flare::interrupt::pending());
  flare::interrupt::reset_count();

  // The client keeps working after an interrupt.
  auto after = perform(client, get(server.url("/hello")));
  REQUIRE(after.response);
  CHECK(after.response->body == "hello");
}

TEST_CASE("shared_client is one client for the whole process") {
  TestServer server;
  CHECK(&flare::net::shared_client() == &flare::net::shared_client());
  Request r = get(server.url("/hello"));
  // The shared client outlives the server; do not leave it a keep-alive connection.
  r.headers.add("Connection", "close");
  auto out = perform(flare::net::shared_client(), r);
  REQUIRE(out.response);
  CHECK(out.response->body == "hello");
}

TEST_CASE("secrets in headers and URLs never appear in transport errors") {
  TestServer server;
  HttpClient client;
  const std::string secret = "sk-SECRET-1234";
  auto with_secrets = [&](std::string url) {
    Request r = get(url);
    r.headers.add("Authorization", "Bearer " + secret);
    r.headers.add("X-Api-Key", secret);
    r.timeout_s = 0.2;
    return r;
  };
  std::string refused = "http://127.0.0.1:" + std::to_string(closed_port()) + "/x";
  auto a = perform(client, with_secrets(refused));
  auto b = perform(client, with_secrets(server.url("/slow?ms=3000")));
  auto c = perform(client, with_secrets("http://user:" + secret +
                                        "@127.0.0.1:" + std::to_string(closed_port()) + "/x"));
  for (auto* out : {&a, &b, &c}) {
    REQUIRE(out->error);
    std::string message = out->error->what();
    CHECK(message.find(secret) == std::string::npos);
    CHECK(message.find("127.0.0.1") != std::string::npos);
  }
}
