// Resource references and paths from clients: ids are checked where they enter,
// every file is resolved inside the state dir (symbolic links included), and
// no error shows an absolute server path. Each attack runs over real HTTP.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "emulator/server/checkpoint.hpp"
#include "fixture.hpp"

using flare::test::http;
using flare::test::Reply;
using flare::test::Server;
namespace fs = std::filesystem;
namespace fe = flare::emulator;

namespace {

// A directory outside the server's state dir, removed at the end of the test.
struct Outside {
  std::string dir = flare::test::make_temp_dir();
  ~Outside() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  bool empty() const { return fs::is_empty(dir); }
};

std::string message(const Reply& r) {
  return r.json()["error"]["message"].get<std::string>();
}

Reply create_job(Server& s, const std::string& id, nlohmann::json body) {
  return http("POST", s.url("/v1/accounts/local/rlorTrainerJobs?rlorTrainerJobId=" + id),
              body.dump(), {s.key_header()});
}

void wait_running(Server& s, const std::string& id) {
  for (int i = 0; i < 2000; ++i) {
    if (s.control("GET", "/v1/accounts/local/rlorTrainerJobs/" + id).json()["state"] ==
        "JOB_STATE_RUNNING")
      return;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  FAIL("trainer job " << id << " never reached RUNNING");
}

nlohmann::json tiny_job(const std::string& deployment = "") {
  nlohmann::json j = {{"trainingConfig", {{"baseModel", "accounts/local/models/tiny-gpt"}}}};
  if (!deployment.empty()) j["hotLoadDeploymentId"] = deployment;
  return j;
}

}  // namespace

TEST_CASE("hotLoadTrainerJob with ../ is refused and creates nothing outside the state dir") {
  Server s;
  Outside out;
  std::string up;
  for (int i = 0; i < 12; ++i) up += "../";
  Reply r =
      s.create_deployment("escape", {{"hotLoadTrainerJob", "accounts/local/rlorTrainerJobs/" + up +
                                                               out.dir.substr(1) + "/made"}});
  CHECK(r.status == 400);
  CHECK(message(r).find("hotLoadTrainerJob") != std::string::npos);
  CHECK(out.empty());
  CHECK(!fs::exists(out.dir + "/made"));
  // Not a lowercase id either: uppercase, dots, a slash at the end.
  for (const std::string& bad :
       std::vector<std::string>{"Job", "a.b", "a/", "..", std::string(64, 'a')}) {
    CAPTURE(bad);
    CHECK(s.create_deployment("d", {{"hotLoadTrainerJob", "accounts/local/rlorTrainerJobs/" + bad}})
              .status == 400);
  }
  // A well-formed reference still works.
  CHECK(s.create_deployment("ok", {{"hotLoadTrainerJob", "accounts/local/rlorTrainerJobs/j-1"}})
            .status == 200);
}

TEST_CASE("hotLoadDeploymentId must name a deployment by its id or full name") {
  Server s;
  s.create_ready("dep");
  Reply bad = create_job(s, "j1", tiny_job("../../dep"));
  CHECK(bad.status == 400);
  CHECK(message(bad).find("hotLoadDeploymentId") != std::string::npos);
  CHECK(create_job(s, "j2", tiny_job("accounts/local/deployments/dep")).status == 200);
  CHECK(create_job(s, "j3", tiny_job("dep")).status == 200);
}

TEST_CASE("a linked trainer cannot write through a link planted in its bucket") {
  Server s;
  Outside out;
  s.create_ready("lt", {{"hotLoadTrainerJob", "accounts/local/rlorTrainerJobs/lt-job"}});
  REQUIRE(create_job(s, "lt-job", tiny_job("lt")).status == 200);
  wait_running(s, "lt-job");
  std::string bucket = s.bucket_dir("lt");
  fs::create_directories(bucket);
  fs::create_symlink(out.dir, bucket + "/snap");  // <bucket>/snap -> outside
  auto gateway = s.url("/training/v1/rlorTrainerJobs/local/lt-job/api/v1/");
  Reply r = http("POST", gateway + "save_weights_for_sampler",
                 nlohmann::json{{"path", "snap"}, {"checkpoint_type", "base"}}.dump(),
                 {s.bearer_header()});
  CHECK(r.status == 400);
  CHECK(message(r).find("outside the server's state directory") != std::string::npos);
  CHECK(message(r).find(s.state_dir) == std::string::npos);
  CHECK(out.empty());
  // A dangling link on the file itself: the snapshot replaces the link inside
  // the bucket and nothing is written at its target.
  fs::create_directories(bucket + "/snap2");
  fs::create_symlink(out.dir + "/model.safetensors", bucket + "/snap2/model.safetensors");
  r = http("POST", gateway + "save_weights_for_sampler",
           nlohmann::json{{"path", "snap2"}, {"checkpoint_type", "base"}}.dump(),
           {s.bearer_header()});
  CHECK(r.status == 200);
  CHECK(out.empty());
  CHECK(fs::is_regular_file(fs::symlink_status(bucket + "/snap2/model.safetensors")));
  // save_state and load_state resolve their file the same way.
  fs::create_directories(s.state_dir + "/trainer_states");
  fs::create_symlink(out.dir, s.state_dir + "/trainer_states/lt-job");
  r = http("POST", gateway + "save_state", nlohmann::json{{"path", "st"}}.dump(),
           {s.bearer_header()});
  CHECK(r.status == 400);
  CHECK(out.empty());
  // The ordinary save still works.
  CHECK(http("POST", gateway + "save_weights_for_sampler",
             nlohmann::json{{"path", "good"}, {"checkpoint_type", "base"}}.dump(),
             {s.bearer_header()})
            .status == 200);
}

TEST_CASE("hotload reads only inside the state dir and its errors show no server path") {
  Server s;
  Outside out;
  s.create_ready("hr", {{"minReplicaCount", 1}});
  fe::write_checkpoint(
      out.dir + "/model.safetensors",
      fe::to_checkpoint(flare::model::init_weights(*flare::model::builtin("tiny-gpt"))));
  // The source URL header may not leave the state dir.
  Reply r = http("POST", s.url("/hot_load/v1/models/hot_load"), R"({"identity":"x"})",
                 {s.bearer_header(), "fireworks-deployment: accounts/local/deployments/hr",
                  "x-fireworks-hot-load-source-url: file://" + out.dir + "/"});
  CHECK(r.status == 400);
  CHECK(message(r).find("outside the server's state directory") != std::string::npos);
  r = http("POST", s.url("/hot_load/v1/models/hot_load"), R"({"identity":"x"})",
           {s.bearer_header(), "fireworks-deployment: accounts/local/deployments/hr",
            "x-fireworks-hot-load-source-url: file://" + s.state_dir + "/../../../../etc/ssl/"});
  CHECK(r.status == 400);
  // A snapshot dir that is a link to outside is not loaded.
  std::string bucket = s.bucket_dir("hr");
  fs::create_symlink(out.dir, bucket + "/linked");
  r = s.hotload("hr", {{"identity", "linked"}});
  CHECK(r.status == 400);
  CHECK(message(r).find("outside the server's state directory") != std::string::npos);
  CHECK(s.hotload_status("hr").json()["replicas"][0]["current_snapshot_identity"] ==
        "accounts/local/models/tiny-gpt");
  // A missing snapshot is named by its identity, not by a server path.
  r = s.hotload("hr", {{"identity", "missing"}});
  CHECK(r.status == 400);
  CHECK(message(r).find("missing/model.safetensors does not exist") != std::string::npos);
  CHECK(message(r).find(s.state_dir) == std::string::npos);
  auto status = s.hotload_status("hr").json()["replicas"][0]["loading_state"];
  CHECK(status["message"].get<std::string>().find(s.state_dir) == std::string::npos);
}
