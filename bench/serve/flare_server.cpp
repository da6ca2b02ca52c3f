#include "flare_server.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>

#include "http_client.hpp"

namespace flare::bench {

namespace {

std::string make_state_dir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "flare-bench-serve-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

// Reads the child's stdout until a line contains "listening on <url>".
std::string wait_for_url(int fd, int pid) {
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 200) > 0) {
      char buf[512];
      const ssize_t n = read(fd, buf, sizeof buf);
      if (n <= 0) break;
      out.append(buf, size_t(n));
      const size_t at = out.find("listening on ");
      if (at != std::string::npos) {
        const size_t start = at + 13;
        const size_t end = out.find_first_of(" \n", start);
        if (end != std::string::npos) return out.substr(start, end - start);
      }
    }
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid)
      throw std::runtime_error("flare serve exited before listening: " + out);
  }
  throw std::runtime_error("flare serve did not print its URL within 30 s: " + out);
}

}  // namespace

FlareServer::FlareServer(const std::string& exe, const std::string& api_key)
    : state_dir_(make_state_dir()), api_key_(api_key) {
  int out[2];
  if (pipe(out) != 0) throw std::runtime_error("pipe failed");
  const std::string log = state_dir_ + "/serve.log";
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    dup2(out[1], STDOUT_FILENO);
    const int err = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (err >= 0) dup2(err, STDERR_FILENO);
    close(out[0]);
    close(out[1]);
    execl(exe.c_str(), exe.c_str(), "serve", "--host", "127.0.0.1", "--port", "0", "--state-dir",
          state_dir_.c_str(), "--api-key", api_key_.c_str(), "--provision-delay", "0",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  try {
    base_url_ = wait_for_url(out[0], pid_);
  } catch (...) {
    close(out[0]);
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    std::filesystem::remove_all(state_dir_);
    throw;
  }
  // Keep draining stdout so the server never blocks on a full pipe.
  std::thread([fd = out[0]] {
    char buf[512];
    while (read(fd, buf, sizeof buf) > 0) {
    }
    close(fd);
  }).detach();
}

FlareServer::~FlareServer() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 100 && waitpid(pid_, &status, WNOHANG) == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (waitpid(pid_, &status, WNOHANG) == 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(state_dir_, ec);
}

std::string FlareServer::create_deployment(const std::string& deployment_id,
                                           const std::string& base_model) {
  using nlohmann::json;
  HttpClient http;
  const std::vector<std::string> control = {"X-Api-Key: " + api_key_,
                                            "Content-Type: application/json"};
  auto checked = [](const HttpResponse& r, const char* what) {
    if (r.status < 200 || r.status >= 300)
      throw std::runtime_error(std::string(what) + " failed: HTTP " + std::to_string(r.status) +
                               " " + r.error + r.body);
    return json::parse(r.body);
  };
  const json accounts =
      checked(http.request("GET", base_url_ + "/v1/accounts?pageSize=2", control), "list accounts");
  const std::string account = accounts.at("accounts").at(0).at("name").get<std::string>();
  const json body = {{"baseModel", base_model}, {"minReplicaCount", 1}, {"maxReplicaCount", 1}};
  checked(http.request("POST",
                       base_url_ + "/v1/" + account + "/deployments?deploymentId=" + deployment_id,
                       control, body.dump()),
          "create deployment");
  const std::string name = account + "/deployments/" + deployment_id;
  const std::vector<std::string> inference = {"Authorization: Bearer " + api_key_,
                                              "Content-Type: application/json"};
  const json probe = {{"model", name}, {"prompt", {1, 2}}, {"max_tokens", 4}, {"temperature", 0}};
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::string last;
  while (std::chrono::steady_clock::now() < deadline) {
    const json d =
        checked(http.request("GET", base_url_ + "/v1/" + name, control), "get deployment");
    last = d.value("state", "");
    if (last == "FAILED") throw std::runtime_error("deployment FAILED: " + d.dump());
    if (last == "READY") {
      const HttpResponse r =
          http.request("POST", base_url_ + "/inference/v1/completions", inference, probe.dump());
      if (r.status == 200) return name;
      last += ", warmup HTTP " + std::to_string(r.status) + " " + r.body;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  throw std::runtime_error("deployment not serving within 60 s (last: " + last + ")");
}

}  // namespace flare::bench
