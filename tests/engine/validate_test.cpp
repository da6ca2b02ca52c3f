#include <doctest/doctest.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "emulator/engine/validate.hpp"

using namespace flare::engine;

namespace {

// The message of the invalid_argument thrown, or "" when none.
std::string error_of(const std::vector<int>& prompt, const SamplingParams& p) {
  flare::model::Config cfg;
  cfg.max_seq = 64;
  try {
    validate_request(prompt, p, cfg);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

bool names(const std::string& msg, const std::string& field) {
  return msg.rfind(field + ":", 0) == 0;
}

}  // namespace

TEST_CASE("a well-formed request passes") {
  SamplingParams p;
  CHECK(error_of({1, 2, 3}, p).empty());
  p.n = 128;
  p.max_tokens = 61;
  p.temperature = 0;
  p.top_p = 1.0;
  p.top_k = 5;
  CHECK(error_of({1, 2, 3}, p).empty());
}

TEST_CASE("each bad field is named") {
  const std::vector<int> ok = {1, 2};
  SamplingParams p;
  CHECK(names(error_of({}, p), "prompt"));
  CHECK(names(error_of({1, 258}, p), "prompt"));
  CHECK(names(error_of({-1}, p), "prompt"));
  CHECK(error_of({1, 258}, p).find("index 1") != std::string::npos);

  auto with = [&](auto edit) {
    SamplingParams q;
    edit(q);
    return error_of(ok, q);
  };
  CHECK(names(with([](SamplingParams& q) { q.n = 0; }), "n"));
  CHECK(names(with([](SamplingParams& q) { q.n = 129; }), "n"));
  CHECK(names(with([](SamplingParams& q) { q.max_tokens = -1; }), "max_tokens"));
  CHECK(names(with([](SamplingParams& q) { q.max_tokens = 63; }), "max_tokens"));
  CHECK(with([](SamplingParams& q) { q.max_tokens = 62; }).empty());
  CHECK(names(with([](SamplingParams& q) { q.temperature = -0.1; }), "temperature"));
  CHECK(names(with([](SamplingParams& q) { q.temperature = std::nan(""); }), "temperature"));
  CHECK(names(with([](SamplingParams& q) { q.top_p = 0; }), "top_p"));
  CHECK(names(with([](SamplingParams& q) { q.top_p = 1.01; }), "top_p"));
  CHECK(names(with([](SamplingParams& q) { q.top_k = -1; }), "top_k"));
  CHECK(names(with([](SamplingParams& q) { q.top_logprobs = -1; }), "top_logprobs"));
  CHECK(names(with([](SamplingParams& q) { q.stop = {"ok", ""}; }), "stop"));
}
