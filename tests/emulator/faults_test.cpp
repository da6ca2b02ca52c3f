// Injected faults: --faults at start and the admin endpoint.
#include <doctest/doctest.h>

#include "fixture.hpp"

using flare::test::http;
using flare::test::Reply;
using flare::test::Server;

namespace {
const nlohmann::json kReq = {
    {"model", "accounts/local/deployments/f"}, {"prompt", "x"}, {"max_tokens", 2}};

Reply set_faults(Server& s, const std::string& spec) {
  return http("POST", s.url("/admin/v1/faults"), nlohmann::json{{"spec", spec}}.dump(),
              {s.key_header()});
}
}  // namespace

TEST_CASE("--faults: 429 with Retry-After, then normal service") {
  Server s(0.05, "", "/inference/v1/completions:429:count=1:retry_after=2");
  s.create_ready("f");
  Reply first = s.complete(kReq);
  CHECK(first.status == 429);
  CHECK(first.header("retry-after") == "2");
  CHECK(first.json()["error"]["code"] == "RESOURCE_EXHAUSTED");
  CHECK(s.complete(kReq).status == 200);
  // Other routes are untouched.
  CHECK(s.control("GET", "/v1/accounts").status == 200);
}

TEST_CASE("admin endpoint: 500, 503, reset, truncate, delay, and its errors") {
  Server s;
  s.create_ready("f");
  REQUIRE(set_faults(s, "/inference/:500:count=1").status == 200);
  CHECK(s.complete(kReq).status == 500);
  CHECK(s.complete(kReq).status == 200);

  REQUIRE(set_faults(s, "/inference/:503:count=1").status == 200);
  Reply u = s.complete(kReq);
  CHECK(u.status == 503);
  CHECK(!u.header("retry-after").empty());

  REQUIRE(set_faults(s, "/inference/:reset:count=1").status == 200);
  Reply reset = s.complete(kReq);
  CHECK(reset.curl_code != 0);
  CHECK(s.complete(kReq).status == 200);

  REQUIRE(set_faults(s, "/inference/:truncate:count=2").status == 200);
  Reply cut = s.complete(kReq);
  CHECK(cut.curl_code != 0);  // the body ends before its Content-Length
  nlohmann::json stream_req = kReq;
  stream_req["stream"] = true;
  stream_req["max_tokens"] = 6;
  Reply cut_stream = s.complete(stream_req);
  CHECK(cut_stream.body.find("[DONE]") == std::string::npos);
  Reply whole = s.complete(stream_req);
  CHECK(whole.status == 200);
  CHECK(whole.body.find("[DONE]") != std::string::npos);

  REQUIRE(set_faults(s, "/inference/:delay:delay_ms=20:count=1").status == 200);
  CHECK(s.complete(kReq).status == 200);
  auto described = http("GET", s.url("/admin/v1/faults"), "", {s.key_header()}).json();
  CHECK(described["rules"][0]["kind"] == "delay");
  CHECK(described["rules"][0]["injected"] == 1);

  Reply bad = set_faults(s, "/inference/:teapot");
  CHECK(bad.status == 400);
  CHECK(bad.json()["error"]["message"].get<std::string>().find("teapot") != std::string::npos);
  CHECK(set_faults(s, "/x:500:rate=2").status == 400);
  CHECK(set_faults(s, "nope:500").status == 400);
  CHECK(http("POST", s.url("/admin/v1/faults"), R"({"spec":""})").status == 401);
  CHECK(http("DELETE", s.url("/admin/v1/faults"), "", {s.key_header()}).status == 200);
  CHECK(s.complete(kReq).status == 200);
}

TEST_CASE("a fault rate with a seed gives the same pattern every run") {
  auto pattern = [] {
    Server s(0.05, "", "/v1/accounts:500:rate=0.5:seed=7");
    std::string out;
    for (int i = 0; i < 24; ++i) out += s.control("GET", "/v1/accounts").status == 500 ? 'x' : '.';
    return out;
  };
  std::string a = pattern();
  CHECK(a == pattern());
  CHECK(a.find('x') != std::string::npos);
  CHECK(a.find('.') != std::string::npos);
}

TEST_CASE("a bad --faults spec is refused at construction") {
  flare::emulator::Options opt;
  opt.faults = "/a:boom";
  CHECK_THROWS_AS(flare::emulator::Emulator{opt}, std::invalid_argument);
}

TEST_CASE("one rule with several kinds picks one per hit and counts each") {
  Server s;
  s.create_ready("f");
  REQUIRE(set_faults(s, "/inference/:500|503:count=20:seed=3").status == 200);
  int s500 = 0, s503 = 0;
  for (int i = 0; i < 20; ++i) {
    int st = s.complete(kReq).status;
    s500 += st == 500;
    s503 += st == 503;
  }
  CHECK(s500 + s503 == 20);
  CHECK(s500 > 0);
  CHECK(s503 > 0);
  auto rule = s.control("GET", "/admin/v1/faults").json()["rules"][0];
  CHECK(rule["kind"] == "500|503");
  CHECK(rule["injected_by_kind"]["500"] == s500);
  CHECK(rule["injected_by_kind"]["503"] == s503);
  CHECK(set_faults(s, "/inference/:500|teapot").status == 400);
}
