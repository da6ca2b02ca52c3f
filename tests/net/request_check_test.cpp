#include <doctest/doctest.h>

#include <string>

#include "net/http_client.hpp"

using flare::net::HttpClient;
using flare::net::Request;

namespace {

flare::Error submit_error(Request r) {
  HttpClient client;
  try {
    client.submit(std::move(r), [](auto*, auto*) {});
  } catch (const flare::Error& e) {
    CHECK(client.in_flight_count() == 0);
    return e;
  }
  FAIL("submit accepted a bad request");
  return flare::Error("", "");
}

Request get(const std::string& url) {
  Request r;
  r.url = url;
  return r;
}

}  // namespace

TEST_CASE("a URL whose scheme is not http or https is refused before sending") {
  auto e = submit_error(get("ftp://example.com/file"));
  CHECK(e.code == "bad_url");
  CHECK_FALSE(e.retryable);
  CHECK(std::string(e.what()) ==
        "GET ftp://example.com/file: bad scheme \"ftp\" (expected http or https)");
  CHECK(submit_error(get("file:///etc/passwd")).code == "bad_url");
  CHECK(submit_error(get("example.com/x")).code == "bad_url");
  CHECK(submit_error(get("")).code == "bad_url");
  CHECK(submit_error(get("http://")).code == "bad_url");
  CHECK(submit_error(get("http://host/a b")).code == "bad_url");
}

TEST_CASE("upper-case schemes are accepted") {
  for (const char* url : {"HTTPS://127.0.0.1:1/", "Http://127.0.0.1:1/", "HTTP://127.0.0.1:1/"}) {
    CAPTURE(url);
    HttpClient client;
    flare::net::RequestId id = 0;
    CHECK_NOTHROW(id = client.submit(get(url), [](auto*, auto*) {}));
    CHECK(id != 0);
    CHECK(client.in_flight_count() == 1);
    client.cancel(id);
    CHECK(client.in_flight_count() == 0);
  }
}

TEST_CASE("a header with a newline is refused, naming the header but not its value") {
  Request r = get("http://127.0.0.1:1/x");
  r.headers.add("X-Api-Key", "secret-value\r\nX-Injected: 1");
  auto e = submit_error(r);
  CHECK(e.code == "bad_request");
  CHECK(std::string(e.what()) ==
        "GET http://127.0.0.1:1/x: header \"X-Api-Key\" contains a newline");

  Request bad_name = get("http://127.0.0.1:1/x");
  bad_name.headers.add("X-Bad\nName", "v");
  CHECK(std::string(submit_error(bad_name).what()).find("header name contains a newline") !=
        std::string::npos);

  Request spaced = get("http://127.0.0.1:1/x");
  spaced.headers.add("Bad Name", "v");
  CHECK(std::string(submit_error(spaced).what()).find("has an invalid name") != std::string::npos);
}

TEST_CASE("a method that is not an HTTP token is refused") {
  Request r = get("http://127.0.0.1:1/x");
  r.method = "GET /evil HTTP/1.1\r\n";
  auto e = submit_error(r);
  CHECK(e.code == "bad_request");
  // The message shows the method with its control characters escaped.
  CHECK(std::string(e.what()).starts_with("GET /evil HTTP/1.1\\x0D\\x0A "));
}

TEST_CASE("describe_request strips credentials from the URL") {
  CHECK(flare::net::describe_request("GET", "https://user:pw@host.example/p?q=1") ==
        "GET https://host.example/p?q=1");
  CHECK(flare::net::describe_request("POST", "http://host/a@b") == "POST http://host/a@b");
}
