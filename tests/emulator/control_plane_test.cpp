// Accounts, auth, deployments CRUD, the state machine and persistence.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "fixture.hpp"

using flare::test::http;
using flare::test::Reply;
using flare::test::Server;

TEST_CASE("accounts lists the one local account and needs X-Api-Key") {
  Server s;
  Reply ok = s.control("GET", "/v1/accounts?pageSize=2");
  REQUIRE(ok.status == 200);
  auto j = ok.json();
  REQUIRE(j["accounts"].size() == 1);
  CHECK(j["accounts"][0]["name"] == "accounts/local");

  Reply none = http("GET", s.url("/v1/accounts?pageSize=2"));
  CHECK(none.status == 401);
  CHECK(none.json()["error"]["code"] == "UNAUTHENTICATED");
  Reply wrong = http("GET", s.url("/v1/accounts"), "", {"X-Api-Key: nope"});
  CHECK(wrong.status == 401);
  // The control plane does not take a bearer token.
  Reply bearer = http("GET", s.url("/v1/accounts"), "", {s.bearer_header()});
  CHECK(bearer.status == 401);
}

TEST_CASE("a generated API key is stored with mode 0600 and reused") {
  std::string dir = flare::test::make_temp_dir();
  std::string key;
  {
    Server s(0.05, dir);
    key = s.emu->api_key();
    CHECK(!key.empty());
    struct stat st {};
    REQUIRE(stat((dir + "/api_key").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
  }
  {
    Server s(0.05, dir);
    CHECK(s.emu->api_key() == key);
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("deployment create, 409, get, 404, list, state machine") {
  Server s(0.2);
  Reply created = s.create_deployment("dep-a", {{"minReplicaCount", 1}, {"maxReplicaCount", 1}});
  REQUIRE_MESSAGE(created.status == 200, created.body);
  auto c = created.json();
  CHECK(c["name"] == "accounts/local/deployments/dep-a");
  CHECK(c["state"] == "CREATING");
  CHECK(c["baseModel"] == "accounts/local/models/tiny-gpt");
  CHECK(c["description"] == "Fireworks training deployment");
  CHECK(std::string(c["hotLoadBucketUrl"]).rfind("file:///", 0) == 0);

  CHECK(s.create_deployment("dep-a", {}).status == 409);
  Reply missing = s.control("GET", "/v1/accounts/local/deployments/nope");
  CHECK(missing.status == 404);
  CHECK(missing.json()["error"]["code"] == "NOT_FOUND");
  CHECK(s.control("GET", "/v1/accounts/other/deployments/dep-a").status == 404);

  CHECK(s.control("GET", "/v1/accounts/local/deployments/dep-a").json()["state"] == "CREATING");
  auto ready = s.wait_state("dep-a", "READY");
  CHECK(ready["replicaCount"] == 1);

  Reply list = s.control("GET", "/v1/accounts/local/deployments");
  REQUIRE(list.status == 200);
  REQUIRE(list.json()["deployments"].size() == 1);
  CHECK(list.json()["deployments"][0]["name"] == "accounts/local/deployments/dep-a");

  Reply del =
      s.control("DELETE", "/v1/accounts/local/deployments/dep-a?ignoreChecks=true&hard=true");
  REQUIRE(del.status == 200);
  CHECK(del.json()["state"] == "DELETING");
  bool gone = false;
  for (int i = 0; i < 500 && !gone; ++i) {
    gone = s.control("GET", "/v1/accounts/local/deployments/dep-a").status == 404;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(gone);
  CHECK(s.control("DELETE", "/v1/accounts/local/deployments/dep-a").status == 404);
}

TEST_CASE("an unknown base model fails with a reason") {
  Server s;
  REQUIRE(s.create_deployment("bad", {{"baseModel", "accounts/local/models/no-such"}}).status ==
          200);
  auto failed = s.wait_state("bad", "FAILED");
  std::string msg = failed["status"]["message"];
  CHECK(msg.find("no-such") != std::string::npos);
  CHECK(msg.find("tiny-gpt") != std::string::npos);
}

TEST_CASE("create validates its input") {
  Server s;
  CHECK(http("POST", s.deployments_url(), "{}", {s.key_header()}).status ==
        400);  // no deploymentId
  CHECK(s.create_deployment("Bad_Id", {}).status == 400);
  Reply minmax = s.create_deployment("x", {{"minReplicaCount", 2}, {"maxReplicaCount", 1}});
  CHECK(minmax.status == 400);
  CHECK(minmax.json()["error"]["message"].get<std::string>().find("minReplicaCount") !=
        std::string::npos);
  CHECK(s.create_deployment("y", {{"minReplicaCount", -1}}).status == 400);
  CHECK(s.create_deployment("z", {{"noSuchField", 1}}).status == 400);
  Reply notjson = http("POST", s.deployments_url() + "?deploymentId=q", "{", {s.key_header()});
  CHECK(notjson.status == 400);
  CHECK(http("POST", s.deployments_url() + "?deploymentId=q", "{}", {s.key_header()}).status ==
        400);
  CHECK(http("GET", s.url("/v1/no/such/route"), "", {s.key_header()}).status == 404);
}

TEST_CASE("PATCH changes only the masked fields") {
  Server s;
  s.create_ready("dep-p",
                 {{"minReplicaCount", 1}, {"maxReplicaCount", 2}, {"description", "first"}});
  Reply r = s.control("PATCH", "/v1/accounts/local/deployments/dep-p?updateMask=max_replica_count",
                      {{"maxReplicaCount", 3}, {"minReplicaCount", 0}, {"description", "second"}});
  REQUIRE_MESSAGE(r.status == 200, r.body);
  auto j = s.control("GET", "/v1/accounts/local/deployments/dep-p").json();
  CHECK(j["maxReplicaCount"] == 3);
  CHECK(j["minReplicaCount"] == 1);
  CHECK(j["description"] == "first");

  r = s.control("PATCH",
                "/v1/accounts/local/deployments/dep-p?updateMask=min_replica_count,description",
                {{"minReplicaCount", 0}, {"description", "second"}});
  REQUIRE(r.status == 200);
  j = s.control("GET", "/v1/accounts/local/deployments/dep-p").json();
  CHECK(j["minReplicaCount"] == 0);
  CHECK(j["description"] == "second");
  CHECK(j["maxReplicaCount"] == 3);

  CHECK(s.control("PATCH", "/v1/accounts/local/deployments/dep-p?updateMask=base_model",
                  {{"baseModel", "accounts/local/models/tiny-gpt-m"}})
            .status == 400);
  CHECK(
      s.control("PATCH", "/v1/accounts/local/deployments/dep-p?updateMask=bogus_field", {{"x", 1}})
          .status == 400);
  CHECK(s.control("PATCH", "/v1/accounts/local/deployments/dep-p?updateMask=min_replica_count",
                  {{"minReplicaCount", 9}})
            .status == 400);
  CHECK(s.control("PATCH", "/v1/accounts/local/deployments/none?updateMask=description",
                  {{"description", "x"}})
            .status == 404);
}

TEST_CASE("one emulator per state dir; the next may start once it has stopped") {
  std::string dir = flare::test::make_temp_dir();
  {
    Server s(0.05, dir);
    s.create_ready("only-one", {{"minReplicaCount", 1}});
    flare::emulator::Options opt;
    opt.state_dir = dir;
    flare::emulator::Emulator second(opt);
    std::string error = "no error";
    try {
      second.start();
    } catch (const std::exception& e) {
      error = e.what();
    }
    CHECK(error.find("is in use by another flare emulator (pid " + std::to_string(::getpid())) !=
          std::string::npos);
    // The first one is untouched by the attempt.
    CHECK(s.control("GET", "/v1/accounts/local/deployments/only-one").json()["state"] == "READY");
    s.restart();  // stop releases the lock, start takes it again
    CHECK(s.control("GET", "/v1/accounts/local/deployments/only-one").status == 200);
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("a restart restores every deployment and the snapshot it served") {
  std::string dir = flare::test::make_temp_dir();
  {
    Server s(0.05, dir);
    s.create_ready("keep-a", {{"minReplicaCount", 1}});
    s.create_ready("keep-b", {{"minReplicaCount", 0}, {"maxReplicaCount", 0}});
    s.create_deployment("keep-c", {{"baseModel", "accounts/local/models/nope"}});
    s.wait_state("keep-c", "FAILED");
    s.control("PATCH", "/v1/accounts/local/deployments/keep-a?updateMask=description",
              {{"description", "kept"}});
  }
  {
    Server s(0.05, dir);
    auto a = s.control("GET", "/v1/accounts/local/deployments/keep-a").json();
    CHECK(a["state"] == "READY");
    CHECK(a["description"] == "kept");
    CHECK(s.control("GET", "/v1/accounts/local/deployments/keep-b").json()["maxReplicaCount"] == 0);
    CHECK(s.control("GET", "/v1/accounts/local/deployments/keep-c").json()["state"] == "FAILED");
    Reply st = s.hotload_status("keep-a");
    REQUIRE(st.status == 200);
    REQUIRE(st.json()["replicas"].size() == 1);
    CHECK(st.json()["replicas"][0]["current_snapshot_identity"] ==
          "accounts/local/models/tiny-gpt");
  }
  std::filesystem::remove_all(dir);
}
