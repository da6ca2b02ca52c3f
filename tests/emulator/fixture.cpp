#include "fixture.hpp"

#include <doctest/doctest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <thread>

namespace flare::test {

std::string make_temp_dir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "flare-emu-test-XXXXXX").string();
  REQUIRE(mkdtemp(tmpl.data()) != nullptr);
  return tmpl;
}

Server::Server(double provision_delay_s, std::string dir, std::string faults, double idle_timeout_s)
    : state_dir(dir.empty() ? make_temp_dir() : dir), own_dir(dir.empty()) {
  opt.state_dir = state_dir;
  opt.provision_delay_s = provision_delay_s;
  opt.faults = faults;
  opt.idle_timeout_s = idle_timeout_s;
  emu = std::make_unique<emulator::Emulator>(opt);
  emu->start();
}

Server::~Server() {
  emu.reset();
  if (own_dir) {
    std::error_code ec;
    std::filesystem::remove_all(state_dir, ec);
  }
}

void Server::restart() {
  emu.reset();
  emu = std::make_unique<emulator::Emulator>(opt);
  emu->start();
}

Reply Server::control(const std::string& method, const std::string& path,
                      const nlohmann::json& body) {
  return http(method, url(path), body.is_null() ? "" : body.dump(), {key_header()});
}

Reply Server::create_deployment(const std::string& id, nlohmann::json body) {
  if (!body.contains("baseModel")) body["baseModel"] = "accounts/local/models/tiny-gpt";
  return http("POST", deployments_url() + "?deploymentId=" + id, body.dump(), {key_header()});
}

nlohmann::json Server::wait_state(const std::string& id, const std::string& state,
                                  double timeout_s) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  nlohmann::json last;
  while (std::chrono::steady_clock::now() < deadline) {
    Reply r = control("GET", "/v1/accounts/local/deployments/" + id);
    if (r.status == 200) {
      last = r.json();
      if (last["state"] == state) return last;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  FAIL("deployment " << id << " did not reach " << state << "; last: " << last.dump());
  return last;
}

nlohmann::json Server::create_ready(const std::string& id, nlohmann::json body) {
  Reply r = create_deployment(id, std::move(body));
  REQUIRE_MESSAGE(r.status == 200, r.body);
  return wait_state(id, "READY");
}

Reply Server::complete(const nlohmann::json& body) {
  return http("POST", url("/inference/v1/completions"), body.dump(), {bearer_header()});
}

Reply Server::hotload(const std::string& id, const nlohmann::json& body) {
  return http("POST", url("/hot_load/v1/models/hot_load"), body.dump(),
              {bearer_header(), "fireworks-model: accounts/local/models/tiny-gpt",
               "fireworks-deployment: accounts/local/deployments/" + id});
}

Reply Server::hotload_status(const std::string& id) {
  return http("GET", url("/hot_load/v1/models/hot_load"), "",
              {bearer_header(), "fireworks-deployment: accounts/local/deployments/" + id});
}

nlohmann::json Server::wait_hotload(const std::string& id, const std::string& identity,
                                    double timeout_s) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  nlohmann::json replica;
  while (std::chrono::steady_clock::now() < deadline) {
    Reply r = hotload_status(id);
    REQUIRE_MESSAGE(r.status == 200, r.body);
    auto j = r.json();
    if (!j["replicas"].empty()) {
      replica = j["replicas"][0];
      auto& ls = replica["loading_state"];
      if (ls["stage"] == "error" && ls["target_snapshot_identity"] == identity) return replica;
      if (replica["current_snapshot_identity"] == identity && ls["stage"] == "idle") return replica;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  FAIL("hotload of " << identity << " did not finish; last: " << replica.dump());
  return replica;
}

std::string Server::bucket_dir(const std::string& id) {
  Reply r = control("GET", "/v1/accounts/local/deployments/" + id);
  REQUIRE(r.status == 200);
  std::string url = r.json()["hotLoadBucketUrl"];
  REQUIRE(url.rfind("file://", 0) == 0);
  return url.substr(7);
}

std::vector<double> Server::served_logprobs(const std::string& id, const std::vector<int>& tokens) {
  Reply r = complete({{"model", "accounts/local/deployments/" + id},
                      {"prompt", tokens},
                      {"max_tokens", 0},
                      {"echo", true},
                      {"logprobs", true},
                      {"temperature", 0}});
  REQUIRE_MESSAGE(r.status == 200, r.body);
  auto content = r.json()["choices"][0]["logprobs"]["content"];
  REQUIRE(content.size() >= tokens.size());
  std::vector<double> out;
  for (size_t k = 1; k < tokens.size(); ++k) {
    CHECK(content[k]["token_id"] == tokens[k]);
    out.push_back(content[k]["logprob"].get<double>());
  }
  return out;
}

}  // namespace flare::test
