#pragma once
// `flare serve` as a child process on a free loopback port with a temporary
// state dir, and the REST calls that give it a READY tiny-gpt deployment.
#include <string>

namespace flare::bench {

class FlareServer {
 public:
  // Starts `exe serve` and waits until it prints its base URL.
  FlareServer(const std::string& exe, const std::string& api_key);
  ~FlareServer();  // SIGTERM, wait, remove the state dir
  FlareServer(const FlareServer&) = delete;
  FlareServer& operator=(const FlareServer&) = delete;

  const std::string& base_url() const { return base_url_; }
  const std::string& api_key() const { return api_key_; }
  int pid() const { return pid_; }

  // Resolves the account, creates the deployment, waits for READY and one
  // successful completion; returns the inference model name
  // ("accounts/<acct>/deployments/<id>").
  std::string create_deployment(const std::string& deployment_id, const std::string& base_model);

 private:
  std::string state_dir_;
  std::string api_key_;
  std::string base_url_;
  int pid_ = -1;
};

}  // namespace flare::bench
