// Requests that must be refused cleanly: out-of-range numbers, non-finite
// training values, wrong keys (compared in constant time, before any fault is
// drawn), bodies labelled as forms, methods a route does not take.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <thread>

#include "emulator/server/router.hpp"
#include "fixture.hpp"

using flare::test::http;
using flare::test::Reply;
using flare::test::Server;

namespace {

std::string message(const Reply& r) {
  return r.json()["error"]["message"].get<std::string>();
}

nlohmann::json sample_request(nlohmann::json extra = nlohmann::json::object()) {
  nlohmann::json j = {
      {"model", "accounts/local/deployments/h"}, {"prompt", "ab"}, {"max_tokens", 2}};
  j.update(extra);
  return j;
}

// A number as raw JSON text, so that 4294967300 or 1e300 reaches the server unchanged.
Reply complete_raw(Server& s, const std::string& field, const std::string& number) {
  std::string body =
      R"({"model":"accounts/local/deployments/h","prompt":"ab",")" + field + "\":" + number + "}";
  if (field != "max_tokens") body.insert(body.size() - 1, R"(,"max_tokens":2)");
  return http("POST", s.url("/inference/v1/completions"), body,
              {s.bearer_header(), "Content-Type: application/json"});
}

struct Job {
  Server& s;
  std::string id;
  Reply call(const std::string& route, const std::string& raw) {
    return http("POST", s.url("/training/v1/rlorTrainerJobs/local/" + id + "/api/v1/" + route), raw,
                {s.bearer_header(), "Content-Type: application/json"});
  }
  Reply call(const std::string& route, const nlohmann::json& body) {
    return call(route, body.dump());
  }
};

Job running_job(Server& s, const std::string& id) {
  REQUIRE(http("POST", s.url("/v1/accounts/local/rlorTrainerJobs?rlorTrainerJobId=" + id),
               R"({"trainingConfig":{"baseModel":"accounts/local/models/tiny-gpt"}})",
               {s.key_header()})
              .status == 200);
  for (int i = 0; i < 2000; ++i) {
    if (s.control("GET", "/v1/accounts/local/rlorTrainerJobs/" + id).json()["state"] ==
        "JOB_STATE_RUNNING")
      return {s, id};
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  FAIL("trainer job never reached RUNNING");
  return {s, id};
}

std::string datum_json(const std::string& tokens, const std::string& extra_inputs = "") {
  return R"({"model_input":{"chunks":[{"type":"encoded_text","tokens":)" + tokens +
         R"(}]},"loss_fn_inputs":{"target_tokens":[98,99,100])" + extra_inputs + "}}";
}

}  // namespace

TEST_CASE("integer fields out of range are refused naming the field, never wrapped") {
  Server s;
  s.create_ready("h", {{"minReplicaCount", 1}});
  REQUIRE(s.complete(sample_request()).status == 200);
  struct Case {
    std::string field, number;
  };
  for (const Case& c : std::vector<Case>{{"max_tokens", "4294967300"},
                                         {"n", "4294967297"},
                                         {"top_k", "-4294967297"},
                                         {"top_logprobs", "4294967296"},
                                         {"logprobs", "4294967297"},
                                         {"max_tokens", "1e300"},
                                         {"max_tokens", "-1e300"},
                                         {"seed", "18446744073709551615"},
                                         {"seed", "1e19"},
                                         {"seed", "\"99999999999999999999\""}}) {
    CAPTURE(c.field);
    CAPTURE(c.number);
    Reply r = complete_raw(s, c.field, c.number);
    CHECK(r.status == 400);
    CHECK(message(r).find("'" + c.field + "'") != std::string::npos);
  }
  // The largest values that fit still reach the engine's own checks.
  Reply big = complete_raw(s, "n", "2147483647");
  CHECK(big.status == 400);
  CHECK(message(big).find("n") != std::string::npos);
  CHECK(complete_raw(s, "seed", "9223372036854775807").status == 200);
}

TEST_CASE("trainer: token ids that would wrap and non-finite values are refused") {
  Server s;
  Job job = running_job(s, "t");
  auto fb = [&](const std::string& datum, const std::string& loss = "cross_entropy") {
    return job.call("forward_backward", R"({"forward_backward_input":{"data":[)" + datum +
                                            R"(],"loss_fn":")" + loss + R"("}})");
  };
  Reply wrap = fb(datum_json("[97,4294967297,99]"));
  CHECK(wrap.status == 400);
  CHECK(message(wrap).find("tokens[1]") != std::string::npos);
  Reply huge = fb(datum_json("[97,98,99]", R"(,"weights":[1,1e300,1])"));
  CHECK(huge.status == 400);
  CHECK(message(huge).find("weights[1]") != std::string::npos);
  // JSON has no NaN or infinity; a number past double's range is refused as such.
  Reply inf_lr = job.call("optim_step", std::string(R"({"adam_params":{"learning_rate":1e400}})"));
  CHECK(inf_lr.status == 400);
  CHECK(message(inf_lr).find("1e400") != std::string::npos);

  // A finite batch whose loss is not: the sampler logprobs make every ratio infinite.
  Reply inf_loss = fb(datum_json("[97,98,99]", R"(,"logprobs":[-1e38,-1e38,-1e38],)"
                                               R"("advantages":[1,1,1])"),
                      "importance_sampling");
  CHECK(inf_loss.status == 400);
  CHECK(message(inf_loss).find("loss") != std::string::npos);
  Reply step = job.call("optim_step", nlohmann::json{{"adam_params", {{"learning_rate", 1e-3}}}});
  CHECK(step.status == 400);
  CHECK(message(step).find("not finite") != std::string::npos);
  // Nothing reached the weights: they save, and training goes on.
  CHECK(job.call("save_weights_for_sampler", nlohmann::json{{"path", "after"}}).status == 200);
  REQUIRE(fb(datum_json("[97,98,99]")).status == 200);
  Reply ok = job.call("optim_step", nlohmann::json{{"adam_params", {{"learning_rate", 1e-3}}}});
  CHECK(ok.status == 200);
  CHECK(ok.json()["step"] == 1);
}

TEST_CASE("the key is compared in constant time and checked before any fault is drawn") {
  using flare::emulator::equal_constant_time;
  CHECK(equal_constant_time("abc", "abc"));
  CHECK(!equal_constant_time("abc", "abd"));
  CHECK(!equal_constant_time("abc", "ab"));
  CHECK(!equal_constant_time("ab", "abc"));
  CHECK(!equal_constant_time("", "a"));
  CHECK(equal_constant_time("", ""));

  Server s(0.05, "", "/v1/accounts:500:count=1");
  std::string key = s.emu->api_key();
  std::string wrong = key;
  wrong.back() = wrong.back() == 'x' ? 'y' : 'x';
  for (const std::string& k : {wrong, key.substr(0, key.size() - 1), key + "x", std::string()}) {
    CHECK(http("GET", s.url("/v1/accounts"), "", {"X-Api-Key: " + k}).status == 401);
  }
  CHECK(http("GET", s.url("/v1/accounts"), "", {"Authorization: Bearer " + wrong}).status == 401);
  // The unauthenticated requests left the one injected fault for the keyed one.
  CHECK(s.control("GET", "/v1/accounts").status == 500);
  CHECK(s.control("GET", "/v1/accounts").status == 200);
}

TEST_CASE("a form-labelled body over 8 KB and a method a route lacks are named") {
  Server s;
  std::string body = R"({"baseModel":"accounts/local/models/tiny-gpt","description":")" +
                     std::string(9000, 'd') + "\"}";
  Reply form = http("POST", s.deployments_url() + "?deploymentId=f", body,
                    {s.key_header(), "Content-Type: application/x-www-form-urlencoded"});
  CHECK(form.status == 415);
  CHECK(message(form).find("Content-Type: application/json") != std::string::npos);
  Reply multipart = http("POST", s.deployments_url() + "?deploymentId=f", "{}",
                         {s.key_header(), "Content-Type: multipart/form-data; boundary=x"});
  CHECK(multipart.status == 415);
  CHECK(message(multipart).find("multipart/form-data") != std::string::npos);
  // Labelled as JSON, the same body is fine.
  CHECK(http("POST", s.deployments_url() + "?deploymentId=f", body,
             {s.key_header(), "Content-Type: application/json"})
            .status == 200);
  Reply put = http("PUT", s.url("/v1/accounts/local/deployments/f"), "{}", {s.key_header()});
  CHECK(put.status == 405);
  CHECK(message(put).find("PUT is not allowed") != std::string::npos);
  CHECK(put.header("allow").find("PATCH") != std::string::npos);
  Reply none = http("GET", s.url("/v1/nothing/here"), "", {s.key_header()});
  CHECK(none.status == 404);
  // A body over a control-plane route's limit is refused before it is read.
  Reply big = http("POST", s.deployments_url() + "?deploymentId=g", std::string(2 << 20, ' '),
                   {s.key_header(), "Content-Type: application/json"});
  CHECK(big.status == 413);
  CHECK(message(big).find("exceeds the limit of 1048576 bytes") != std::string::npos);
}
