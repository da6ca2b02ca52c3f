#pragma once
// A running emulator on a free loopback port with its own temporary state dir,
// and helpers for the protocol's common calls.
#include <memory>
#include <string>

#include "emulator/server/emulator.hpp"
#include "http_client.hpp"

namespace flare::test {

std::string make_temp_dir();

struct Server {
  explicit Server(double provision_delay_s = 0.05, std::string state_dir = "",
                  std::string faults = "", double idle_timeout_s = 300);
  ~Server();
  void restart();  // stop and start again on the same state dir

  std::string state_dir;
  bool own_dir;
  emulator::Options opt;
  std::unique_ptr<emulator::Emulator> emu;

  std::string url(const std::string& path) const { return emu->base_url() + path; }
  std::string deployments_url() const { return url("/v1/accounts/local/deployments"); }
  std::string key_header() const { return "X-Api-Key: " + emu->api_key(); }
  std::string bearer_header() const { return "Authorization: Bearer " + emu->api_key(); }

  Reply control(const std::string& method, const std::string& path,
                const nlohmann::json& body = nullptr);
  Reply create_deployment(const std::string& id, nlohmann::json body);
  // Creates and waits until READY (fails the test otherwise).
  nlohmann::json create_ready(const std::string& id, nlohmann::json body = {});
  nlohmann::json wait_state(const std::string& id, const std::string& state, double timeout_s = 10);
  Reply complete(const nlohmann::json& body);
  Reply hotload(const std::string& id, const nlohmann::json& body);
  Reply hotload_status(const std::string& id);
  // Polls hotload status until the replica serves `identity` or reports an
  // error for it; returns the replica's last status object.
  nlohmann::json wait_hotload(const std::string& id, const std::string& identity,
                              double timeout_s = 10);
  std::string bucket_dir(const std::string& id);
  // Logprob of every token of `tokens` after the first, as served by the deployment.
  std::vector<double> served_logprobs(const std::string& id, const std::vector<int>& tokens);
};

}  // namespace flare::test
