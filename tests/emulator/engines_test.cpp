// Engines (enableAddons deployments) serving LoRA addons: models imported from
// uploaded PEFT folders, deployed models loaded and unloaded, the lifecycle
// statuses, routing by "<model>#<deployment>" and by model name, and refusals.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <random>
#include <thread>

#include "emulator/server/checkpoint.hpp"
#include "fixture.hpp"

namespace fs = std::filesystem;
using namespace flare;
using nlohmann::json;

namespace {

const std::string kBase = "accounts/local/models/tiny-gpt";

// A PEFT folder with nonzero B, so the addon moves the logits.
std::string write_adapter(const std::string& base, unsigned seed, const std::string& name = "") {
  std::string dir = test::make_temp_dir();
  const model::Config& cfg = *model::builtin(name.empty() ? "tiny-gpt" : name);
  model::Weights lora = model::init_lora(cfg, {4, 8, seed});
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 0.2f);
  for (auto& t : lora) {
    if (t.name.find("lora_B") != std::string::npos)
      for (auto& v : t.data) v = nd(rng);
  }
  emulator::write_peft_adapter(dir, base, 4, 8, lora);
  return dir;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Creates a LoRA model and uploads `folder` through getUploadEndpoint / PUT / validateUpload.
test::Reply import_model(test::Server& s, const std::string& id, const std::string& folder,
                         const std::string& base = kBase) {
  auto r =
      s.control("POST", "/v1/accounts/local/models",
                {{"modelId", id},
                 {"model", {{"kind", "HF_PEFT_ADDON"}, {"peftDetails", {{"baseModel", base}}}}}});
  REQUIRE_MESSAGE(r.status == 200, r.body);
  CHECK(r.json()["state"] == "UPLOADING");
  json sizes;
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors"})
    sizes[f] = fs::file_size(folder + "/" + f);
  r = s.control("POST", "/v1/accounts/local/models/" + id + ":getUploadEndpoint",
                {{"filenameToSize", sizes}});
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const json urls = r.json()["filenameToSignedUrls"];
  REQUIRE(urls.size() == 2);
  for (auto& [f, url] : urls.items()) {
    auto put = test::http("PUT", url.get<std::string>(), slurp(folder + "/" + f), {s.key_header()});
    REQUIRE_MESSAGE(put.status == 200, put.body);
  }
  return s.control("POST", "/v1/accounts/local/models/" + id + ":validateUpload", json::object());
}

test::Reply deploy(test::Server& s, const std::string& model, const std::string& engine) {
  return s.control("POST", "/v1/accounts/local/deployedModels",
                   {{"model", "accounts/local/models/" + model},
                    {"deployment", "accounts/local/deployments/" + engine}});
}

std::string short_id(const json& dm) {
  std::string n = dm["name"];
  return n.substr(n.rfind('/') + 1);
}

std::string status_of(test::Server& s, const std::string& dm_id) {
  auto r = s.control("GET", "/v1/accounts/local/deployedModels/" + dm_id);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  return r.json()["state"];
}

std::string wait_status(test::Server& s, const std::string& dm_id, const std::string& want,
                        double timeout_s = 10) {
  auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  std::string st;
  while (std::chrono::steady_clock::now() < end) {
    st = status_of(s, dm_id);
    if (st == want) return st;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return st;
}

std::vector<double> logprobs(test::Server& s, const std::string& model) {
  std::vector<int> tokens = {72, 101, 108, 108, 111, 32, 119};
  auto r = s.complete({{"model", model},
                       {"prompt", tokens},
                       {"max_tokens", 0},
                       {"echo", true},
                       {"logprobs", true},
                       {"temperature", 0}});
  REQUIRE_MESSAGE(r.status == 200, r.body);
  const json content = r.json()["choices"][0]["logprobs"]["content"];
  REQUIRE(content.size() == tokens.size());
  std::vector<double> out;
  for (auto& c : content) out.push_back(c["logprob"].is_null() ? 0.0 : c["logprob"].get<double>());
  return out;
}

std::string numbered(const char* prefix, int i) {
  std::string s = prefix;
  s += std::to_string(i);
  return s;
}

json engine_body() {
  return {{"baseModel", kBase}, {"enableAddons", true}, {"minReplicaCount", 1}};
}

}  // namespace

TEST_CASE("an engine serves its base model and three addons, each addressed by name") {
  test::Server s;
  s.create_ready("eng", engine_body());
  std::vector<std::string> ids;
  for (unsigned i = 0; i < 3; ++i) {
    std::string folder = write_adapter(kBase, 11 + i);
    auto v = import_model(s, numbered("addon-", i), folder);
    fs::remove_all(folder);
    REQUIRE_MESSAGE(v.status == 200, v.body);
    auto d = deploy(s, numbered("addon-", i), "eng");
    REQUIRE_MESSAGE(d.status == 200, d.body);
    CHECK(d.json()["source"]["upload"] == true);
    ids.push_back(short_id(d.json()));
  }
  for (auto& id : ids) CHECK(wait_status(s, id, "DEPLOYED") == "DEPLOYED");
  auto base = logprobs(s, "accounts/local/deployments/eng");
  std::vector<std::vector<double>> per;
  for (int i = 0; i < 3; ++i) {
    std::string m = "accounts/local/models/addon-" + std::to_string(i);
    per.push_back(logprobs(s, m + "#accounts/local/deployments/eng"));
    CHECK(per.back() != base);
    CHECK(logprobs(s, m) == per.back());  // served by the one engine that has it
  }
  CHECK(per[0] != per[1]);
  CHECK(per[1] != per[2]);

  // Concurrent requests for different addons are batched and each gets its own answer.
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int k = 0; k < 12; ++k) {
    threads.emplace_back([&, k] {
      int i = k % 3;
      if (logprobs(s, "accounts/local/models/addon-" + std::to_string(i) +
                          "#accounts/local/deployments/eng") != per[i])
        ++wrong;
    });
  }
  for (auto& t : threads) t.join();
  CHECK(wrong == 0);

  auto hs = s.hotload_status("eng").json();
  CHECK(hs["replicas"][0]["loaded_adapters"].size() == 3);

  auto list = s.control("GET",
                        "/v1/accounts/local/deployedModels?filter=deployment%3D%22accounts/"
                        "local/deployments/eng%22");
  REQUIRE_MESSAGE(list.status == 200, list.body);
  auto items = list.json()["deployedModels"];
  REQUIRE(items.size() == 4);  // the base model and three addons
  CHECK(items[0]["source"]["baseModel"] == true);
  CHECK(items[0]["state"] == "DEPLOYED");
  auto del_base = s.control("DELETE", "/v1/accounts/local/deployedModels/base-eng");
  CHECK(del_base.status == 400);
  CHECK(del_base.body.find("cannot be removed on its own") != std::string::npos);
}

TEST_CASE("undeploying one addon leaves the others serving without a failed request") {
  test::Server s;
  s.create_ready("eng", engine_body());
  std::vector<std::string> ids;
  for (unsigned i = 0; i < 3; ++i) {
    std::string folder = write_adapter(kBase, 21 + i);
    REQUIRE(import_model(s, numbered("m", i), folder).status == 200);
    fs::remove_all(folder);
    ids.push_back(short_id(deploy(s, numbered("m", i), "eng").json()));
  }
  for (auto& id : ids) REQUIRE(wait_status(s, id, "DEPLOYED") == "DEPLOYED");
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0}, served{0};
  std::vector<std::thread> clients;
  for (int i = 1; i < 3; ++i) {
    clients.emplace_back([&, i] {
      while (!stop) {
        auto r = s.complete({{"model", "accounts/local/models/m" + std::to_string(i) +
                                           "#accounts/local/deployments/eng"},
                             {"prompt", "ab"},
                             {"max_tokens", 4}});
        if (r.status != 200) ++failures;
        ++served;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto del = s.control("DELETE", "/v1/accounts/local/deployedModels/" + ids[0]);
  CHECK(del.status == 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  stop = true;
  for (auto& t : clients) t.join();
  CHECK(failures == 0);
  CHECK(served > 0);
  auto gone = s.complete(
      {{"model", "accounts/local/models/m0#accounts/local/deployments/eng"}, {"prompt", "ab"}});
  CHECK(gone.status == 404);
  CHECK(s.control("GET", "/v1/accounts/local/deployedModels/" + ids[0]).status == 404);
}

TEST_CASE("a slow adapter load holds up no request: the engine's other addon keeps serving") {
  test::Server s;
  s.create_ready("eng", engine_body());
  for (const char* m : {"fast", "slow"}) {
    std::string folder = write_adapter(kBase, unsigned(m[0]));
    REQUIRE(import_model(s, m, folder).status == 200);
    fs::remove_all(folder);
  }
  const std::string fast = short_id(deploy(s, "fast", "eng").json());
  REQUIRE(wait_status(s, fast, "DEPLOYED") == "DEPLOYED");
  // The slow model's config becomes a FIFO: loading it waits until this test writes it.
  const std::string config = s.state_dir + "/lora-models/slow/adapter_config.json";
  const std::string text = slurp(config);
  fs::remove(config);
  REQUIRE(mkfifo(config.c_str(), 0600) == 0);
  const std::string slow = short_id(deploy(s, "slow", "eng").json());
  // Opening the write end succeeds once the loader has opened the read end.
  int fd = -1;
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((fd = open(config.c_str(), O_WRONLY | O_NONBLOCK)) < 0 &&
         std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  REQUIRE_MESSAGE(fd >= 0, "the adapter load never started");
  // While it waits: the other addon serves and the control plane answers.
  auto answered = std::async(std::launch::async, [&] {
    const int served = s.complete({{"model",
                                    "accounts/local/models/fast#accounts/local/"
                                    "deployments/eng"},
                                   {"prompt", "ab"},
                                   {"max_tokens", 2}})
                           .status;
    return std::make_pair(served, status_of(s, slow));
  });
  const bool in_time = answered.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  CHECK_MESSAGE(in_time, "requests waited for the adapter load");
  CHECK(write(fd, text.data(), text.size()) == ssize_t(text.size()));
  close(fd);
  const auto [served, status] = answered.get();
  CHECK(served == 200);
  CHECK(status == "DEPLOYING");
  CHECK(wait_status(s, slow, "DEPLOYED") == "DEPLOYED");
  CHECK(logprobs(s, "accounts/local/models/slow") != logprobs(s, "accounts/local/models/fast"));
}

TEST_CASE("addon lifecycle: Pending, Deployed, Deactivated, Reactivating, restored after restart") {
  test::Server s(0.3);
  REQUIRE(s.create_deployment("eng", engine_body()).status == 200);
  std::string folder = write_adapter(kBase, 5);
  REQUIRE(import_model(s, "a", folder).status == 200);
  fs::remove_all(folder);
  auto d = deploy(s, "a", "eng");
  REQUIRE_MESSAGE(d.status == 200, d.body);
  CHECK(d.json()["state"] == "PENDING");  // the engine is still provisioning
  std::string id = short_id(d.json());
  CHECK(wait_status(s, id, "DEPLOYED") == "DEPLOYED");
  auto served = logprobs(s, "accounts/local/models/a");

  auto p = s.control("PATCH", "/v1/accounts/local/deployments/eng",
                     {{"minReplicaCount", 0}, {"maxReplicaCount", 0}});
  REQUIRE(p.status == 200);
  CHECK(status_of(s, id) == "DEACTIVATED");
  p = s.control("PATCH", "/v1/accounts/local/deployments/eng",
                {{"minReplicaCount", 1}, {"maxReplicaCount", 1}});
  REQUIRE(p.status == 200);
  CHECK(status_of(s, id) == "REACTIVATING");
  CHECK(wait_status(s, id, "DEPLOYED") == "DEPLOYED");
  CHECK(logprobs(s, "accounts/local/models/a") == served);

  s.restart();
  CHECK(wait_status(s, id, "DEPLOYED") == "DEPLOYED");
  CHECK(logprobs(s, "accounts/local/models/a") == served);

  // The model's files gone while the engine is down: the reload fails and says why.
  fs::remove(s.state_dir + "/lora-models/a/adapter_model.safetensors");
  s.restart();
  CHECK(wait_status(s, id, "FAILED") == "FAILED");
  auto failed = s.control("GET", "/v1/accounts/local/deployedModels/" + id).json();
  CHECK(failed["status"]["message"].get<std::string>().find("loading the adapter failed") == 0);
  auto refused = s.complete({{"model", "accounts/local/models/a"}, {"prompt", "ab"}});
  CHECK(refused.status == 400);
  CHECK(refused.body.find("failed: loading the adapter failed") != std::string::npos);

  REQUIRE(s.control("DELETE", "/v1/accounts/local/deployments/eng").status == 200);
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (s.control("GET", "/v1/accounts/local/deployments/eng").status != 404 &&
         std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(s.control("GET", "/v1/accounts/local/deployedModels/" + id).status == 404);
  CHECK(s.control("DELETE", "/v1/accounts/local/models/a").status == 200);
}

TEST_CASE("refused: an engine without addons, another base model, a non-causal adapter") {
  test::Server s;
  s.create_ready("plain", {{"baseModel", kBase}, {"minReplicaCount", 1}});
  s.create_ready("eng", engine_body());
  std::string folder = write_adapter(kBase, 1);
  REQUIRE(import_model(s, "a", folder).status == 200);

  auto r = deploy(s, "a", "plain");
  CHECK(r.status == 400);
  CHECK(r.body.find("without enableAddons") != std::string::npos);

  std::string other = write_adapter("accounts/local/models/tiny-gpt-m", 2, "tiny-gpt-m");
  REQUIRE(import_model(s, "m-other", other, "accounts/local/models/tiny-gpt-m").status == 200);
  fs::remove_all(other);
  r = deploy(s, "m-other", "eng");
  CHECK(r.status == 400);
  CHECK(r.body.find("is an addon of base model 'accounts/local/models/tiny-gpt-m'") !=
        std::string::npos);

  json cfg = json::parse(slurp(folder + "/adapter_config.json"));
  cfg["task_type"] = "SEQ_CLS";
  std::ofstream(folder + "/adapter_config.json") << cfg.dump();
  r = import_model(s, "seq", folder);
  CHECK(r.status == 400);
  CHECK(r.body.find("field 'task_type' must be \\\"CAUSAL_LM\\\"") != std::string::npos);
  fs::remove_all(folder);

  r = s.control("POST", "/v1/accounts/local/models",
                {{"modelId", "Bad_Id"}, {"model", {{"kind", "HF_PEFT_ADDON"}}}});
  CHECK(r.status == 400);
  CHECK(r.body.find("modelId 'Bad_Id'") != std::string::npos);
  r = s.control("POST", "/v1/accounts/local/models/a/files/..%2Fescape", json::object());
  CHECK(r.status != 200);
  r = s.control(
      "POST", "/v1/accounts/local/models",
      {{"modelId", "t"},
       {"model", {{"kind", "HF_PEFT_ADDON"}, {"peftDetails", {{"baseModel", kBase}}}}},
       {"source", {{"trainerJob", "accounts/local/rlorTrainerJobs/none"}, {"snapshot", "../x"}}}});
  CHECK(r.status == 400);
  CHECK(r.body.find("source.snapshot") != std::string::npos);
}
