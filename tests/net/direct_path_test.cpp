// Exact bytes on the wire: the client against RawServer, through flare's own
// HTTP/1.1 path and through libcurl (FLARE_HTTP_LIBCURL=1), which must agree.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "net/http_client.hpp"
#include "raw_server.hpp"

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

Request get(const std::string& url, double timeout_s = 10) {
  Request r;
  r.url = url;
  r.timeout_s = timeout_s;
  return r;
}

Request post(const std::string& url, std::string body, double timeout_s = 10) {
  Request r = get(url, timeout_s);
  r.method = "POST";
  r.body = std::move(body);
  return r;
}

// A client on flare's own path (curl = false) or on libcurl (curl = true).
// The variable is read when a client is made; it is restored afterwards, so
// that the other tests still run as the environment says.
std::unique_ptr<HttpClient> make_client(bool curl) {
  const char* before = std::getenv("FLARE_HTTP_LIBCURL");
  std::optional<std::string> saved;
  if (before) saved = before;
  if (curl) {
    setenv("FLARE_HTTP_LIBCURL", "1", 1);
  } else {
    unsetenv("FLARE_HTTP_LIBCURL");
  }
  auto client = std::make_unique<HttpClient>();
  if (saved) {
    setenv("FLARE_HTTP_LIBCURL", saved->c_str(), 1);
  } else {
    unsetenv("FLARE_HTTP_LIBCURL");
  }
  return client;
}

constexpr bool kTransports[] = {false, true};

std::string header(const Outcome& out, const char* name) {
  if (!out.response) return "<no response>";
  const std::string* v = out.response->headers.find(name);
  return v ? *v : "<absent>";
}

std::string error_code(const Outcome& out) {
  return out.error ? out.error->code : std::string("<no error>");
}

}  // namespace

TEST_CASE("direct: Content-Length body, headers and status") {
  for (bool curl : kTransports) {
    CAPTURE(curl);
    RawServer server(RawServer::answer_each(
        "HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-One: 1\r\nx-two:  two words \r\n\r\n"
        "hello"));
    auto client = make_client(curl);
    auto out = perform(*client, get(server.url("/a?b=c")));
    REQUIRE(out.response);
    CHECK(out.response->status == 201);
    CHECK(out.response->body == "hello");
    CHECK(header(out, "X-ONE") == "1");
    CHECK(header(out, "X-Two") == "two words");
    CHECK(out.response->headers.items.size() == 3);
    CHECK(server.requests() == 1);
    REQUIRE(server.request_lines().size() == 1);
    CHECK(server.request_lines()[0] == "GET /a?b=c HTTP/1.1");
  }
}

TEST_CASE("direct: the request bytes match libcurl's") {
  std::vector<std::string> texts;
  for (bool curl : kTransports) {
    RawServer server(RawServer::answer_each("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
    auto client = make_client(curl);
    Request r = post(server.url("/p#frag"), "body!");
    r.headers.add("X-Probe", "v");
    r.headers.add("X-Empty", "");
    auto out = perform(*client, r);
    REQUIRE(out.response);
    REQUIRE(server.request_texts().size() == 1);
    texts.push_back(server.request_texts()[0]);
  }
  // The port differs: compare with the Host line taken out.
  auto without_host = [](std::string s) {
    auto h = s.find("Host: ");
    return s.erase(h, s.find("\r\n", h) + 2 - h);
  };
  CHECK(without_host(texts[0]) == without_host(texts[1]));
}

TEST_CASE("direct: chunked body with chunk extensions and trailers") {
  for (bool curl : kTransports) {
    CAPTURE(curl);
    RawServer server(RawServer::answer_each(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Before: b\r\n\r\n"
        "5;name=value\r\nhello\r\n"
        "2 ; quoted=\"a;b\"\r\n, \r\n"
        "A\r\nworld.....\r\n"
        "0;last\r\nX-Trailer: t\r\nX-Other: o\r\n\r\n"));
    auto client = make_client(curl);
    for (int i = 0; i < 3; ++i) {
      auto out = perform(*client, get(server.url("/c")));
      REQUIRE(out.response);
      CHECK(out.response->status == 200);
      CHECK(out.response->body == "hello, world.....");
      CHECK(header(out, "x-before") == "b");
    }
    CHECK(server.requests() == 3);
    CHECK(server.connections() == 1);  // the trailer was read to its end
  }
}

TEST_CASE("direct: a body until close (HTTP/1.0, or Connection: close without length)") {
  for (bool curl : kTransports) {
    CAPTURE(curl);
    for (std::string head : {"HTTP/1.0 200 OK\r\n", "HTTP/1.1 200 OK\r\nConnection: close\r\n"}) {
      CAPTURE(head);
      RawServer server(RawServer::answer_and_close(head + "X-A: a\r\n\r\nuntil\r\nclose"));
      auto client = make_client(curl);
      for (int i = 0; i < 2; ++i) {
        auto out = perform(*client, get(server.url("/u")));
        REQUIRE(out.response);
        CHECK(out.response->status == 200);
        CHECK(out.response->body == "until\r\nclose");
        CHECK(header(out, "x-a") == "a");
      }
      CHECK(server.requests() == 2);
      CHECK(server.connections() == 2);
    }
  }
}

TEST_CASE("direct: a response split into one-byte TCP writes") {
  const std::string response =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Slow: yes\r\n\r\n"
      "3\r\nabc\r\n4;e=1\r\ndefg\r\n0\r\nT: x\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsecond!";
  for (bool curl : kTransports) {
    CAPTURE(curl);
    RawServer server([&](RawConn& c) {
      // Both responses in pieces; the second is sent only after its request.
      auto split = response.find("HTTP/1.1", 10);
      if (!c.read_request()) return;
      c.send_slowly(std::string_view(response).substr(0, split), 1, 1);
      if (!c.read_request()) return;
      c.send_slowly(std::string_view(response).substr(split), 1, 1);
      c.wait_peer_close(5000);
    });
    auto client = make_client(curl);
    auto a = perform(*client, get(server.url("/1")));
    auto b = perform(*client, get(server.url("/2")));
    REQUIRE(a.response);
    REQUIRE(b.response);
    CHECK(a.response->body == "abcdefg");
    CHECK(header(a, "x-slow") == "yes");
    CHECK(b.response->body == "second!");
    CHECK(server.connections() == 1);
  }
}

TEST_CASE("direct: 204 and 304 have no body, even with a Content-Length") {
  for (bool curl : kTransports) {
    CAPTURE(curl);
    RawServer server([](RawConn& c) {
      if (!c.read_request()) return;
      c.send("HTTP/1.1 204 No Content\r\nX-K: 1\r\n\r\n");
      if (!c.read_request()) return;
      c.send("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: \"e\"\r\n\r\n");
      if (!c.read_request()) return;
      c.send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
      c.wait_peer_close(5000);
    });
    auto client = make_client(curl);
    auto a = perform(*client, get(server.url("/1")));
    auto b = perform(*client, get(server.url("/2")));
    auto c = perform(*client, get(server.url("/3")));
    REQUIRE(a.response);
    REQUIRE(b.response);
    REQUIRE(c.response);
    CHECK(a.response->status == 204);
    CHECK(a.response->body.empty());
    CHECK(header(a, "x-k") == "1");
    CHECK(b.response->status == 304);
    CHECK(b.response->body.empty());
    CHECK(header(b, "etag") == "\"e\"");
    CHECK(c.response->body == "ok");
    CHECK(server.connections() == 1);
  }
}

TEST_CASE("direct: 100 Continue and 103 Early Hints before the response are skipped") {
  for (bool curl : kTransports) {
    CAPTURE(curl);
    RawServer server(
        RawServer::answer_each("HTTP/1.1 100 Continue\r\n\r\n"
                               "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                               "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Final: f\r\n\r\nfinal"));
    auto client = make_client(curl);
    for (const char* method : {"GET", "POST"}) {
      Request r = get(server.url("/i"));
      r.method = method;
      auto out = perform(*client, r);
      REQUIRE(out.response);
      CHECK(out.response->status == 200);
      CHECK(out.response->body == "final");
      CHECK(header(out, "x-final") == "f");
      CHECK(header(out, "link") == "<absent>");
      CHECK(out.response->headers.items.size() == 2);
    }
    CHECK(server.connections() == 1);
  }
}

TEST_CASE("direct: keep-alive reuse, and Connection: close answers are not reused") {
  for (bool curl : kTransports) {
    CAPTURE(curl);
    {
      RawServer server(RawServer::answer_each("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nk"));
      auto client = make_client(curl);
      for (int i = 0; i < 10; ++i) REQUIRE(perform(*client, get(server.url("/k"))).response);
      CHECK(server.connections() == 1);
      CHECK(server.requests() == 10);
      CHECK(client->stats().connections == 1);
      CHECK(client->stats().requests == 10);
    }
    {
      RawServer server(RawServer::answer_and_close(
          "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nc"));
      auto client = make_client(curl);
      for (int i = 0; i < 3; ++i) {
        auto out = perform(*client, get(server.url("/c")));
        REQUIRE(out.response);
        CHECK(out.response->body == "c");
      }
      CHECK(server.connections() == 3);
      CHECK(server.requests() == 3);
      CHECK(client->stats().connections == 3);
    }
  }
}

TEST_CASE("direct: a keep-alive connection the server closed while idle is replaced once") {
  for (bool curl : kTransports) {
    CAPTURE(curl);
    RawServer server([](RawConn& c) {
      if (c.index() == 0) {  // answers as keep-alive, then closes while idle
        if (c.read_request()) c.send("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst");
        c.close();
        return;
      }
      while (auto request = c.read_request())
        c.send("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nlater");
    });
    auto client = make_client(curl);
    auto a = perform(*client, get(server.url("/1")));
    REQUIRE(a.response);
    CHECK(a.response->body == "first");
    // The client does not pump meanwhile: it finds out when it reuses the connection.
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    auto b = perform(*client, post(server.url("/2"), "once"));
    REQUIRE(b.response);
    CHECK(b.response->body == "later");
    CHECK(server.connections() == 2);
    auto lines = server.request_lines();
    REQUIRE(lines.size() == 2);
    CHECK(lines[1] == "POST /2 HTTP/1.1");
  }
}

// The idle-close race at scale: a server closes its idle keep-alive connections
// together (one sweep) while the client reuses one. The retry must not land on
// another connection of the same sweep: it goes on a new connection.
TEST_CASE("direct: a retry after a stale keep-alive connection goes on a new connection") {
  constexpr int kPooled = 6;
  for (bool curl : kTransports) {
    CAPTURE(curl);
    RawServer* self = nullptr;
    RawServer server([&self](RawConn& c) {
      if (c.index() >= kPooled) {
        while (c.read_request()) c.send("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh");
        return;
      }
      if (!c.read_request()) return;
      // Every pooled connection carries one request at once, so that each is a connection.
      for (int i = 0; i < 1000 && self->connections() < kPooled; ++i) self->sleep_ms(5);
      c.send("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\npooled");
      // The next request meets the idle sweep: closed unanswered (and unprocessed).
      if (c.read_request()) c.close();
    });
    self = &server;
    auto client = make_client(curl);
    std::vector<Outcome> warm(kPooled);
    std::vector<RequestId> ids;
    for (auto& w : warm) ids.push_back(client->submit(get(server.url("/warm")), record_into(w)));
    client->wait_all(ids);
    for (auto& w : warm) REQUIRE(w.response);
    REQUIRE(server.connections() == kPooled);
    for (int i = 0; i < 3; ++i) {
      CAPTURE(i);
      auto out = perform(*client, get(server.url("/after")));
      CHECK(error_code(out) == "<no error>");
      REQUIRE(out.response);
      CHECK(out.response->body == "fresh");
    }
  }
}

TEST_CASE("direct: a connection idle near the server's announced keep-alive time is not reused") {
  RawServer server(RawServer::answer_each(
      "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=1, max=100\r\nContent-Length: 1\r\n\r\nk"));
  auto client = make_client(false);
  REQUIRE(perform(*client, get(server.url("/1"))).response);
  REQUIRE(perform(*client, get(server.url("/2"))).response);
  CHECK(server.connections() == 1);
  // Past half of the announced second the server may close it as the request goes out.
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  REQUIRE(perform(*client, get(server.url("/3"))).response);
  CHECK(server.connections() == 2);
}

TEST_CASE("direct: a server that closes without answering: an error, and the POST is sent once") {
  for (bool curl : kTransports) {
    CAPTURE(curl);
    RawServer server([](RawConn& c) {
      if (c.read_request()) c.close();
    });
    auto client = make_client(curl);
    auto out = perform(*client, post(server.url("/pay"), "amount=1"));
    CHECK_FALSE(out.response);
    CHECK(error_code(out) == "connection_reset");
    CHECK(out.error->retryable);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    CHECK(server.requests() == 1);
    CHECK(server.connections() == 1);
  }
}

TEST_CASE("direct: a server that closes mid-body: an error naming the missing bytes") {
  for (bool curl : kTransports) {
    CAPTURE(curl);
    RawServer server(
        RawServer::answer_and_close("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"));
    auto client = make_client(curl);
    auto out = perform(*client, get(server.url("/short")));
    CHECK_FALSE(out.response);
    CHECK(error_code(out) == "connection_reset");
    CHECK(server.requests() == 1);
  }
}

TEST_CASE("direct: malformed responses are clear errors") {
  // The error code on flare's path, and libcurl's where it differs ("-": a
  // response; libcurl is more lenient there).
  struct Case {
    std::string name;
    std::string bytes;
    std::string direct;
    std::string curl;
  };
  const std::string t = "transport_failed", reset = "connection_reset";
  const std::string big_header = "X-Big: " + std::string(400 * 1024, 'x') + "\r\n";
  std::string many_headers;
  for (int i = 0; i < 40000; ++i) many_headers += "X-H" + std::to_string(i) + ": v\r\n";
  const std::vector<Case> cases = {
      {"bad status line", "HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n", t, t},
      {"not HTTP", "SSH-2.0-OpenSSH_9.0\r\n\r\n", t, t},
      {"negative Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nhello", t, t},
      {"garbage Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello", t, "-"},
      {"overflowing Content-Length",
       "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\nhello", t, "timeout"},
      {"bad chunk size",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", reset,
       reset},
      {"overflowing chunk size",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nhello\r\n", reset,
       reset},
      {"chunk without its CR LF",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n", reset,
       reset},
      {"header line without colon",
       "HTTP/1.1 200 OK\r\nNo colon here\r\nContent-Length: 2\r\n\r\nok", t, t},
      {"one huge header", "HTTP/1.1 200 OK\r\n" + big_header + "Content-Length: 2\r\n\r\nok", t,
       "out_of_memory"},
      {"a huge head of small headers",
       "HTTP/1.1 200 OK\r\n" + many_headers + "Content-Length: 2\r\n\r\nok", t, reset},
      {"a status line that never ends", "HTTP/1.1 200 OK" + std::string(400 * 1024, ' '), t,
       "out_of_memory"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    for (bool curl : kTransports) {
      CAPTURE(curl);
      RawServer server(RawServer::answer_each(c.bytes));
      auto client = make_client(curl);
      auto start = std::chrono::steady_clock::now();
      auto out = perform(*client, get(server.url("/m"), 2));
      CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(8));  // no hang
      const std::string& expected = curl ? c.curl : c.direct;
      if (out.error) {
        std::string message = out.error->code + " " + out.error->what();
        MESSAGE(message);
      }
      if (expected == "-") {
        CHECK(out.response);
      } else {
        CHECK_FALSE(out.response);
        CHECK(error_code(out) == expected);
      }
    }
  }
}

TEST_CASE("direct: a server that never answers times out") {
  for (bool curl : kTransports) {
    CAPTURE(curl);
    RawServer server([](RawConn& c) {
      if (c.read_request()) c.wait_peer_close(20000);
    });
    auto client = make_client(curl);
    auto start = std::chrono::steady_clock::now();
    auto out = perform(*client, get(server.url("/never"), 0.3));
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
    CHECK_FALSE(out.response);
    CHECK(error_code(out) == "timeout");
    CHECK(out.error->retryable);
    CHECK(server.requests() == 1);
  }
}

TEST_CASE("direct: a server that answers headers but stalls in the body times out") {
  for (bool curl : kTransports) {
    CAPTURE(curl);
    RawServer server([](RawConn& c) {
      if (!c.read_request()) return;
      c.send("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
      c.wait_peer_close(20000);
    });
    auto client = make_client(curl);
    auto out = perform(*client, get(server.url("/stall"), 0.3));
    CHECK(error_code(out) == "timeout");
  }
}

namespace {

// Answers every request with its own path as the body.
void echo_path(RawConn& c) {
  while (auto request = c.read_request()) {
    auto start = request->find(' ') + 1;
    std::string path = request->substr(start, request->find(' ', start) - start);
    c.send("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(path.size()) + "\r\n\r\n" + path);
  }
}

// Sends n concurrent POSTs /r/0 .. /r/n-1. Every request the server saw, it
// saw once (a POST is never sent twice). On flare's path every request is
// answered; libcurl opens all n connections at once, and one whose handshake
// a full backlog dropped waits for its timeout (seen: "Operation timed out
// after 30000 milliseconds with 0 bytes received"), so there a request may
// fail, but only with a transport error, never with another request's answer.
void run_concurrent(HttpClient& client, RawServer& server, int n, bool curl) {
  std::vector<Outcome> outs(static_cast<std::size_t>(n));
  std::vector<RequestId> ids;
  for (int i = 0; i < n; ++i)
    ids.push_back(client.submit(post(server.url("/r/" + std::to_string(i)), "x", curl ? 5 : 30),
                                record_into(outs[static_cast<std::size_t>(i)])));
  client.wait_all(ids);
  std::multiset<std::string> lines;
  for (auto& l : server.request_lines()) lines.insert(l);
  int answered = 0;
  for (int i = 0; i < n; ++i) {
    CAPTURE(i);
    auto& out = outs[static_cast<std::size_t>(i)];
    const std::string line = "POST /r/" + std::to_string(i) + " HTTP/1.1";
    CHECK(lines.count(line) <= 1);
    if (out.response) {
      ++answered;
      CHECK(out.response->body == "/r/" + std::to_string(i));
      CHECK(lines.count(line) == 1);
    } else {
      REQUIRE(out.error);
      CHECK(out.error->retryable);  // a transport failure, not a bad answer
      if (!curl) FAIL_CHECK("not answered: " << out.error->what());
    }
  }
  if (!curl) CHECK(answered == n);
  CHECK(lines.size() <= static_cast<std::size_t>(n));
}

}  // namespace

TEST_CASE("direct: 64 concurrent requests to a slow acceptor with a backlog of 1") {
  for (bool curl : kTransports) {
    CAPTURE(curl);
    RawServer::Options options;
    options.backlog = 1;
    options.accept_delay_ms = 5;
    RawServer server(echo_path, options);
    auto client = make_client(curl);
    run_concurrent(*client, server, 64, curl);
    CHECK(server.connections() <= 64);
  }
}

TEST_CASE("direct: requests to a server that holds its accept queue for 1.5 s arrive once") {
  for (bool curl : kTransports) {
    CAPTURE(curl);
    RawServer::Options options;
    options.backlog = 1;
    options.hold_accept = true;
    RawServer server(echo_path, options);
    std::jthread releaser([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));
      server.release_accept();
    });
    auto client = make_client(curl);
    run_concurrent(*client, server, 16, curl);
  }
}

TEST_CASE("direct: a server that starts reading a large POST after 1.5 s gets it once") {
  for (std::size_t size : {64u * 1024, 400u * 1024}) {
    for (bool curl : kTransports) {
      CAPTURE(curl);
      CAPTURE(size);
      RawServer server([](RawConn& c) {
        if (c.pause(1500) && c.read_request())
          c.send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        c.wait_peer_close(20000);
      });
      auto client = make_client(curl);
      auto out = perform(*client, post(server.url("/late"), std::string(size, 'b')));
      REQUIRE(out.response);
      CHECK(out.response->body == "ok");
      CHECK(server.connections() == 1);
      CHECK(server.requests() == 1);
    }
  }
}
