// The registry of cloud resources a script created, and their release with plain
// HTTP calls against a real loopback server.
#include "fireworks/resource_registry.hpp"

#include <doctest/doctest.h>
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace flare::fireworks;

namespace {

std::shared_ptr<const Connection> connection(const std::string& base_url) {
  auto c = std::make_shared<Connection>();
  c->api_key = "fw_registrytestkey0123456789";
  c->base_url = base_url;
  c->normalise();
  return c;
}

std::vector<std::string> names() {
  std::vector<std::string> out;
  for (const auto& r : resources::snapshot()) out.push_back(r.name);
  return out;
}

// Answers every PATCH and DELETE with `status`, remembering "METHOD target body key".
struct RecordingServer {
  httplib::Server server;
  std::thread thread;
  int port = 0;
  std::mutex mutex;
  std::vector<std::string> seen;

  explicit RecordingServer(int status) {
    auto record = [this, status](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock(mutex);
      seen.push_back(req.method + " " + req.target + " " + req.body + " " +
                     req.get_header_value("X-Api-Key"));
      res.status = status;
      res.set_content("{}", "application/json");
    };
    server.Patch(".*", record);
    server.Delete(".*", record);
    port = server.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { server.listen_after_bind(); });
    while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~RecordingServer() {
    server.stop();
    thread.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
};

}  // namespace

TEST_CASE("created, scaled and deleted resources are followed from the calls") {
  resources::forget_all();
  auto c = connection("http://127.0.0.1:9");
  resources::note(c, "POST", "/v1/accounts/a/deployments?deploymentId=d1&skipShapeValidation=true",
                  "{}", 200);
  resources::note(c, "POST", "/v1/accounts/a/deployments?deploymentId=d2", "{}", 409);  // existed
  resources::note(c, "POST", "/v1/accounts/a/deployments?deploymentId=d3", "{}", 500);  // failed
  resources::note(c, "POST", "/v1/accounts/a/rlorTrainerJobs?rlorTrainerJobId=t1", "{}", 200);
  resources::note(c, "GET", "/v1/accounts/a/deployments/d4", "", 200);
  CHECK(names() ==
        std::vector<std::string>{"accounts/a/deployments/d1", "accounts/a/rlorTrainerJobs/t1"});

  // Scaling an existing deployment up makes it the script's to release; to zero releases it.
  resources::note(c, "PATCH", "/v1/accounts/a/deployments/d4?updateMask=min_replica_count",
                  R"({"minReplicaCount":1})", 200);
  CHECK(names().size() == 3);
  resources::note(c, "PATCH", "/v1/accounts/a/deployments/d1?updateMask=description",
                  R"({"description":"x"})", 200);
  CHECK(names().size() == 3);
  resources::note(c, "PATCH",
                  "/v1/accounts/a/deployments/d1?updateMask=min_replica_count,max_replica_count",
                  R"({"minReplicaCount":0,"maxReplicaCount":0})", 200);
  resources::note(c, "DELETE", "/v1/accounts/a/deployments/d4?ignoreChecks=true&hard=true", "",
                  404);
  resources::note(c, "DELETE", "/v1/accounts/a/rlorTrainerJobs/t1", "", 200);
  CHECK(names().empty());
}

TEST_CASE("release_all scales deployments to zero and deletes trainer jobs") {
  resources::forget_all();
  RecordingServer server(200);
  auto c = connection(server.url());
  resources::note(c, "POST", "/v1/accounts/a/deployments?deploymentId=d1", "{}", 200);
  resources::note(c, "POST", "/v1/accounts/a/rlorTrainerJobs?rlorTrainerJobId=t1", "{}", 200);
  auto result = resources::release_all(2.0);
  CHECK(result.released == 2);
  CHECK(result.failed == 0);
  CHECK(names().empty());
  std::lock_guard lock(server.mutex);
  std::sort(server.seen.begin(), server.seen.end());
  REQUIRE(server.seen.size() == 2);
  CHECK(server.seen[0] == "DELETE /v1/accounts/a/rlorTrainerJobs/t1  fw_registrytestkey0123456789");
  CHECK(server.seen[1] ==
        "PATCH /v1/accounts/a/deployments/d1?updateMask=min_replica_count,max_replica_count "
        R"({"minReplicaCount":0,"maxReplicaCount":0} fw_registrytestkey0123456789)");
}

TEST_CASE("a release the server refuses keeps the resource and reports it") {
  resources::forget_all();
  RecordingServer server(500);
  auto c = connection(server.url());
  resources::note(c, "POST", "/v1/accounts/a/deployments?deploymentId=d1", "{}", 200);
  auto result = resources::release_all(2.0);
  CHECK(result.released == 0);
  CHECK(result.failed == 1);
  CHECK(names() == std::vector<std::string>{"accounts/a/deployments/d1"});
  resources::forget_all();
}
