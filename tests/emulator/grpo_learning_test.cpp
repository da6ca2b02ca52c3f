// GRPO learns for real, driven over HTTP: sample a group of 8 per prompt from
// the deployment, reward completions made only of vowels, mean-centred group
// advantages, importance_sampling loss, optim_step, save a delta, hotload, repeat.
#include <doctest/doctest.h>

#include <cstring>
#include <thread>

#include "delta/codec.hpp"
#include "fixture.hpp"

using flare::test::http;
using flare::test::Reply;
using flare::test::Server;

namespace {

constexpr int kGroup = 8;
constexpr int kPrompts = 4;
constexpr int kMaxTokens = 4;
constexpr int kMaxSteps = 60;

double vowel_reward(const std::vector<int>& completion) {
  if (completion.empty()) return 0;
  int vowels = 0;
  for (int t : completion) vowels += (t < 256 && std::strchr("aeiou", t) && t != 0) ? 1 : 0;
  return static_cast<double>(vowels) / kMaxTokens;
}

std::vector<int> prompt_tokens(int i) {
  std::vector<int> p = {256};
  std::string text = "say vowels " + std::to_string(i) + ":";
  p.insert(p.end(), text.begin(), text.end());
  return p;
}

}  // namespace

TEST_CASE("GRPO on the vowel task raises mean reward to >= 0.8 within 60 steps") {
  Server s;
  s.create_ready("grpo", {{"minReplicaCount", 1}});
  Reply job =
      http("POST", s.url("/v1/accounts/local/rlorTrainerJobs?rlorTrainerJobId=grpo-t"),
           nlohmann::json{{"serviceMode", true},
                          {"trainingConfig", {{"baseModel", "accounts/local/models/tiny-gpt"}}},
                          {"hotLoadDeploymentId", "grpo"}}
               .dump(),
           {s.key_header()});
  REQUIRE(job.status == 200);
  for (int i = 0; i < 1000; ++i) {
    if (s.control("GET", "/v1/accounts/local/rlorTrainerJobs/grpo-t").json()["state"] ==
        "JOB_STATE_RUNNING")
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::string gateway = s.url("/training/v1/rlorTrainerJobs/local/grpo-t/api/v1/");
  auto train = [&](const std::string& route, const nlohmann::json& body) {
    Reply r = http("POST", gateway + route, body.dump(), {s.key_header()});
    REQUIRE_MESSAGE(r.status == 200, r.body);
    return r.json();
  };

  double first_reward = -1, best = 0;
  int reached_at = -1;
  std::string served_snapshot;
  std::string curve;
  for (int step = 0; step < kMaxSteps; ++step) {
    // Sample kGroup completions per prompt, all requests in flight at once.
    std::vector<Reply> replies(kPrompts);
    std::vector<std::thread> threads;
    for (int p = 0; p < kPrompts; ++p) {
      threads.emplace_back([&, p] {
        replies[p] = s.complete({{"model", "accounts/local/deployments/grpo"},
                                 {"prompt", prompt_tokens(p)},
                                 {"n", kGroup},
                                 {"max_tokens", kMaxTokens},
                                 {"temperature", 1.0},
                                 {"seed", step * 100 + p},
                                 {"logprobs", true},
                                 {"raw_output", true}});
      });
    }
    for (auto& t : threads) t.join();

    nlohmann::json data = nlohmann::json::array();
    double total = 0;
    for (int p = 0; p < kPrompts; ++p) {
      REQUIRE_MESSAGE(replies[p].status == 200, replies[p].body);
      auto choices = replies[p].json()["choices"];
      std::vector<double> rewards;
      for (auto& c : choices)
        rewards.push_back(vowel_reward(c["raw_output"]["completion_token_ids"]));
      double mean = 0;
      for (double r : rewards) mean += r / rewards.size();
      total += mean / kPrompts;
      for (size_t i = 0; i < choices.size(); ++i) {
        double adv = rewards[i] - mean;
        if (adv == 0) continue;
        auto prompt = prompt_tokens(p);
        std::vector<int> completion = choices[i]["raw_output"]["completion_token_ids"];
        if (completion.empty()) continue;
        std::vector<int> seq = prompt;
        seq.insert(seq.end(), completion.begin(), completion.end());
        std::vector<int> in(seq.begin(), seq.end() - 1), target(seq.begin() + 1, seq.end());
        std::vector<double> lp(in.size(), 0.0), advs(in.size(), 0.0);
        auto content = choices[i]["logprobs"]["content"];
        for (size_t k = 0; k < completion.size(); ++k) {
          lp[prompt.size() - 1 + k] = content[k]["logprob"].get<double>();
          advs[prompt.size() - 1 + k] = adv;
        }
        data.push_back({{"model_input", {{"chunks", {{{"type", "encoded_text"}, {"tokens", in}}}}}},
                        {"loss_fn_inputs",
                         {{"target_tokens", target}, {"logprobs", lp}, {"advantages", advs}}}});
      }
    }
    if (first_reward < 0) first_reward = total;
    best = std::max(best, total);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s%.2f", step ? " " : "", total);
    curve += buf;
    if (total >= 0.8) {
      reached_at = step;
      break;
    }
    if (!data.empty()) {
      train("forward_backward",
            {{"forward_backward_input", {{"data", data}, {"loss_fn", "importance_sampling"}}}});
      train("optim_step", {{"adam_params", {{"learning_rate", 1e-2}, {"grad_clip_norm", 1.0}}}});
    }
    // Sync: a base first, then each delta against the snapshot served before it.
    std::string name = "step-" + std::to_string(step + 1) + "-0badf00d";
    bool is_base = served_snapshot.empty();
    auto saved = train("save_weights_for_sampler",
                       {{"path", name}, {"checkpoint_type", is_base ? "base" : "delta"}});
    nlohmann::json hl = {{"identity", saved["snapshot_name"]}, {"reset_prompt_cache", true}};
    if (!is_base) {
      hl["incremental_snapshot_metadata"] = {
          {"previous_snapshot_identity", served_snapshot},
          {"compression_format", std::string(flare::delta::kFormatName)},
          {"checksum_format", "alder32"}};
    }
    Reply r = s.hotload("grpo", hl);
    REQUIRE_MESSAGE(r.status == 200, r.body);
    auto rep = s.wait_hotload("grpo", name);
    REQUIRE_MESSAGE(rep["current_snapshot_identity"] == name, rep.dump());
    served_snapshot = name;
  }
  MESSAGE("mean reward per step: " << curve);
  CHECK(first_reward < 0.3);
  CHECK(reached_at >= 0);
  CHECK(best >= 0.8);
}
