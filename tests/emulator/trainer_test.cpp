// Trainer jobs, the trainer gateway, sampler snapshots and sampler/trainer parity.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "delta/codec.hpp"
#include "emulator/server/checkpoint.hpp"
#include "fixture.hpp"

using flare::test::http;
using flare::test::Reply;
using flare::test::Server;

namespace {

const std::vector<int> kProbe = {256, 'o', 'n', 'e', ' ', 't', 'w',
                                 'o', ' ', 't', 'h', 'r', 'e', 'e'};

struct Job {
  Server& s;
  std::string id;
  std::string gateway() const {
    return s.url("/training/v1/rlorTrainerJobs/local/" + id + "/api/v1/");
  }
  Reply call(const std::string& route, const nlohmann::json& body) {
    return http("POST", gateway() + route, body.dump(), {s.key_header(), s.bearer_header()});
  }
};

Reply create_job(Server& s, const std::string& id, nlohmann::json body) {
  return http("POST", s.url("/v1/accounts/local/rlorTrainerJobs?rlorTrainerJobId=" + id),
              body.dump(), {s.key_header()});
}

nlohmann::json wait_running(Server& s, const std::string& id) {
  for (int i = 0; i < 1000; ++i) {
    auto j = s.control("GET", "/v1/accounts/local/rlorTrainerJobs/" + id).json();
    if (j["state"] == "JOB_STATE_RUNNING") return j;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  FAIL("trainer job " << id << " never reached RUNNING");
  return {};
}

nlohmann::json datum(const std::vector<int>& seq) {
  std::vector<int> in(seq.begin(), seq.end() - 1), target(seq.begin() + 1, seq.end());
  return {{"model_input", {{"chunks", {{{"type", "encoded_text"}, {"tokens", in}}}}}},
          {"loss_fn_inputs", {{"target_tokens", target}}}};
}

std::vector<double> trainer_logprobs(Job& job, const std::vector<int>& seq) {
  Reply r = job.call("forward",
                     {{"forward_input", {{"data", {datum(seq)}}, {"loss_fn", "cross_entropy"}}}});
  REQUIRE_MESSAGE(r.status == 200, r.body);
  return r.json()["loss_fn_outputs"][0]["logprobs"].get<std::vector<double>>();
}

void train_step(Job& job, double lr) {
  Reply fb = job.call(
      "forward_backward",
      {{"forward_backward_input", {{"data", {datum(kProbe)}}, {"loss_fn", "cross_entropy"}}}});
  REQUIRE_MESSAGE(fb.status == 200, fb.body);
  Reply os = job.call("optim_step", {{"adam_params", {{"learning_rate", lr}}}});
  REQUIRE_MESSAGE(os.status == 200, os.body);
}

void check_parity(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) CHECK(std::abs(a[i] - b[i]) <= 1e-4);
}

}  // namespace

TEST_CASE("trainer job lifecycle and validation") {
  Server s(0.1);
  nlohmann::json tc = {
      {"baseModel", "accounts/local/models/tiny-gpt"}, {"loraRank", 0}, {"learningRate", 1e-4}};
  for (int rank : {65, -1}) {
    Reply lora =
        create_job(s, "j",
                   {{"serviceMode", true},
                    {"trainingConfig", {{"baseModel", tc["baseModel"]}, {"loraRank", rank}}}});
    CHECK(lora.status == 400);
    CHECK(lora.json()["error"]["message"] ==
          "trainingConfig.loraRank is " + std::to_string(rank) +
              ": must be 0 (full-weight training) or a LoRA rank from 1 to 64");
  }
  Reply alpha = create_job(
      s, "j",
      {{"trainingConfig", {{"baseModel", tc["baseModel"]}, {"loraRank", 8}, {"loraAlpha", 0}}}});
  CHECK(alpha.status == 400);
  CHECK(alpha.json()["error"]["message"] == "trainingConfig.loraAlpha must be a number > 0");
  Reply unembed =
      create_job(s, "j",
                 {{"trainingConfig",
                   {{"baseModel", tc["baseModel"]}, {"loraRank", 8}, {"trainUnembed", "no"}}}});
  CHECK(unembed.status == 400);
  CHECK(unembed.json()["error"]["message"] == "trainingConfig.trainUnembed must be true or false");
  CHECK(create_job(s, "j", {{"trainingConfig", {{"baseModel", "accounts/local/models/nope"}}}})
            .status == 400);
  CHECK(create_job(s, "j", {{"trainingConfig", tc}, {"hotLoadDeploymentId", "missing"}}).status ==
        400);
  s.create_ready("dep-m", {{"baseModel", "accounts/local/models/tiny-gpt-m"}});
  Reply mismatch = create_job(s, "j", {{"trainingConfig", tc}, {"hotLoadDeploymentId", "dep-m"}});
  CHECK(mismatch.status == 400);
  CHECK(mismatch.json()["error"]["message"].get<std::string>().find("tiny-gpt-m") !=
        std::string::npos);
  CHECK(create_job(s, "j", {{"trainingConfig", tc}, {"bogus", 1}}).status == 400);
  CHECK(create_job(s, "j", nlohmann::json::object()).status == 400);

  Reply ok =
      create_job(s, "j", {{"serviceMode", true}, {"trainingConfig", tc}, {"displayName", "t"}});
  REQUIRE_MESSAGE(ok.status == 200, ok.body);
  CHECK(ok.json()["name"] == "accounts/local/rlorTrainerJobs/j");
  CHECK(ok.json()["state"] == "JOB_STATE_PENDING");
  CHECK(create_job(s, "j", {{"trainingConfig", tc}}).status == 409);
  Job job{s, "j"};
  CHECK(http("GET", job.gateway() + "healthz", "", {s.key_header()}).status == 503);
  wait_running(s, "j");
  CHECK(http("GET", job.gateway() + "healthz", "", {s.key_header()}).status == 200);
  CHECK(http("GET", job.gateway() + "healthz").status == 401);

  // A deployment made for this trainer shares its bucket.
  auto dep = s.create_ready("dep-j", {{"hotLoadTrainerJob", "accounts/local/rlorTrainerJobs/j"}});
  auto jj = s.control("GET", "/v1/accounts/local/rlorTrainerJobs/j").json();
  CHECK(dep["hotLoadBucketUrl"] == jj["hotLoadBucketUrl"]);

  auto list = s.control("GET", "/v1/accounts/local/rlorTrainerJobs").json();
  CHECK(list["rlorTrainerJobs"].size() == 1);
  CHECK(job.call("forward_backward",
                 {{"forward_backward_input", {{"data", {datum(kProbe)}}, {"loss_fn", "dpo"}}}})
            .status == 400);
  CHECK(
      job.call("forward_backward", {{"forward_backward_input", {{"data", {{{"model_input", 1}}}}}}})
          .status == 400);
  CHECK(
      job.call("save_weights_for_sampler", {{"path", "d1"}, {"checkpoint_type", "delta"}}).status ==
      400);
  CHECK(job.call("save_weights_for_sampler", {{"path", "x"}, {"checkpoint_type", "full"}}).status ==
        400);
  CHECK(job.call("optim_step", {{"adam_params", {{"beta1", 1.5}}}}).status == 400);
  CHECK(job.call("load_state", {{"path", "never-saved"}}).status == 404);

  CHECK(s.control("DELETE", "/v1/accounts/local/rlorTrainerJobs/j").status == 200);
  CHECK(s.control("GET", "/v1/accounts/local/rlorTrainerJobs/j").status == 404);
  CHECK(http("GET", job.gateway() + "healthz", "", {s.key_header()}).status == 404);
}

TEST_CASE("training lowers the loss; save_state/load_state resume bit-identically") {
  Server s;
  nlohmann::json tc = {{"baseModel", "accounts/local/models/tiny-gpt"}};
  REQUIRE(create_job(s, "t", {{"trainingConfig", tc}}).status == 200);
  wait_running(s, "t");
  Job job{s, "t"};
  auto fb = [&] {
    Reply r = job.call(
        "forward_backward",
        {{"forward_backward_input", {{"data", {datum(kProbe)}}, {"loss_fn", "cross_entropy"}}}});
    REQUIRE_MESSAGE(r.status == 200, r.body);
    return r.json();
  };
  auto first = fb();
  CHECK(first["loss_fn_outputs"][0]["logprobs"].size() == kProbe.size() - 1);
  Reply os =
      job.call("optim_step", {{"adam_params", {{"learning_rate", 1e-2}, {"grad_clip_norm", 1.0}}}});
  REQUIRE(os.status == 200);
  CHECK(os.json()["step"] == 1);
  CHECK(os.json()["grad_norm"].get<double>() > 0);
  for (int i = 0; i < 4; ++i) train_step(job, 1e-2);
  auto later = fb();
  CHECK(later["metrics"]["loss"].get<double>() < first["metrics"]["loss"].get<double>());
  job.call("optim_step",
           {{"adam_params", {{"learning_rate", 0.0}}}});  // clears the accumulated gradient

  REQUIRE(job.call("save_state", {{"path", "ckpt-a"}}).status == 200);
  train_step(job, 5e-3);
  train_step(job, 5e-3);
  auto run1 = trainer_logprobs(job, kProbe);
  Reply loaded = job.call("load_state", {{"path", "ckpt-a"}});
  REQUIRE_MESSAGE(loaded.status == 200, loaded.body);
  CHECK(loaded.json()["step"] == 6);
  train_step(job, 5e-3);
  train_step(job, 5e-3);
  CHECK(trainer_logprobs(job, kProbe) == run1);
}

TEST_CASE("parity: the deployment serves the trainer's logprobs after base and delta hotloads") {
  Server s;
  s.create_ready("par", {{"minReplicaCount", 1}});
  REQUIRE(create_job(s, "par-t",
                     {{"trainingConfig", {{"baseModel", "accounts/local/models/tiny-gpt"}}},
                      {"hotLoadDeploymentId", "par"}})
              .status == 200);
  wait_running(s, "par-t");
  Job job{s, "par-t"};
  for (int i = 0; i < 3; ++i) train_step(job, 1e-2);

  Reply base = job.call("save_weights_for_sampler",
                        {{"path", "step-3-abcd1234"}, {"checkpoint_type", "base"}});
  REQUIRE_MESSAGE(base.status == 200, base.body);
  CHECK(base.json()["snapshot_name"] == "step-3-abcd1234");
  REQUIRE(s.hotload("par", {{"identity", "step-3-abcd1234"}}).status == 200);
  REQUIRE(s.wait_hotload("par", "step-3-abcd1234")["current_snapshot_identity"] ==
          "step-3-abcd1234");
  check_parity(s.served_logprobs("par", kProbe), trainer_logprobs(job, kProbe));

  train_step(job, 1e-3);
  Reply delta = job.call("save_weights_for_sampler",
                         {{"path", "step-4-abcd1234"}, {"checkpoint_type", "delta"}});
  REQUIRE_MESSAGE(delta.status == 200, delta.body);
  CHECK(delta.json()["previous_snapshot_identity"] == "step-3-abcd1234");
  Reply hl = s.hotload("par", {{"identity", "step-4-abcd1234"},
                               {"incremental_snapshot_metadata",
                                {{"previous_snapshot_identity", "step-3-abcd1234"},
                                 {"compression_format", std::string(flare::delta::kFormatName)},
                                 {"checksum_format", "alder32"}}}});
  REQUIRE_MESSAGE(hl.status == 200, hl.body);
  REQUIRE(s.wait_hotload("par", "step-4-abcd1234")["current_snapshot_identity"] ==
          "step-4-abcd1234");
  auto served = s.served_logprobs("par", kProbe);
  check_parity(served, trainer_logprobs(job, kProbe));
  // The delta changed something the sampler can see.
  Reply stale =
      s.complete({{"model", "accounts/local/deployments/par"}, {"prompt", "x"}, {"max_tokens", 1}});
  CHECK(stale.json()["model"] == "accounts/local/models/tiny-gpt@step-4-abcd1234");
}

TEST_CASE("LoRA trainer: lm_head is a target by default; trainUnembed false leaves it out") {
  Server s;
  s.create_ready("heads", {{"minReplicaCount", 1}});
  for (bool unembed : {true, false}) {
    const std::string id = unembed ? "with-head" : "no-head";
    nlohmann::json tc = {{"baseModel", "accounts/local/models/tiny-gpt"}, {"loraRank", 4}};
    if (!unembed) tc["trainUnembed"] = false;
    REQUIRE(create_job(s, id, {{"trainingConfig", tc}, {"hotLoadDeploymentId", "heads"}}).status ==
            200);
    wait_running(s, id);
    Job job{s, id};
    train_step(job, 2e-2);
    REQUIRE(job.call("save_weights_for_sampler", {{"path", id}}).status == 200);
    std::ifstream in(s.bucket_dir("heads") + "/" + id + "/adapter_config.json");
    const nlohmann::json config = nlohmann::json::parse(in);
    const auto targets = config["target_modules"].get<std::vector<std::string>>();
    CHECK(std::count(targets.begin(), targets.end(), "lm_head") == (unembed ? 1 : 0));
    CHECK(targets.size() == (unembed ? 8u : 7u));
    const auto adapter = flare::emulator::read_peft_adapter(*flare::model::builtin("tiny-gpt"),
                                                            s.bucket_dir("heads") + "/" + id);
    CHECK(flare::model::lora_has_head(adapter.weights) == unembed);
  }
}

TEST_CASE("LoRA trainer: step 0 is the base, adapters save as PEFT folders and serve with parity") {
  Server s;
  s.create_ready("lora", {{"minReplicaCount", 1}});
  nlohmann::json tc = {{"baseModel", "accounts/local/models/tiny-gpt"}, {"loraRank", 4}};
  REQUIRE(
      create_job(s, "lora-t", {{"trainingConfig", tc}, {"hotLoadDeploymentId", "lora"}}).status ==
      200);
  REQUIRE(create_job(s, "full-t", {{"trainingConfig", {{"baseModel", tc["baseModel"]}}}}).status ==
          200);
  auto j = wait_running(s, "lora-t");
  CHECK(j["trainingConfig"]["loraAlpha"] == 8.0);  // 2 x rank when the client sends none
  wait_running(s, "full-t");
  Job job{s, "lora-t"}, full{s, "full-t"};
  // Step 0: B is zero, so the adapter changes nothing, bit for bit.
  CHECK(trainer_logprobs(job, kProbe) == trainer_logprobs(full, kProbe));
  CHECK(
      job.call("save_weights_for_sampler", {{"path", "m"}, {"checkpoint_type", "merged"}}).status ==
      400);

  for (int i = 0; i < 4; ++i) train_step(job, 2e-2);
  const auto trained = trainer_logprobs(job, kProbe);
  CHECK(trained != trainer_logprobs(full, kProbe));
  // 'delta' saves the whole adapter as well: LoRA has no delta chain.
  for (const char* type : {"base", "delta"}) {
    const std::string name = std::string("ad-") + type + "-abcd1234";
    Reply saved = job.call("save_weights_for_sampler", {{"path", name}, {"checkpoint_type", type}});
    REQUIRE_MESSAGE(saved.status == 200, saved.body);
    CHECK(saved.json()["checkpoint_type"] == "base");
    CHECK(!saved.json().contains("previous_snapshot_identity"));
    const std::string dir = s.bucket_dir("lora") + "/" + name;
    CHECK(std::filesystem::is_regular_file(dir + "/adapter_config.json"));
    CHECK(std::filesystem::is_regular_file(dir + "/adapter_model.safetensors"));
    CHECK(!std::filesystem::exists(dir + "/model.safetensors"));
  }
  Reply merged = job.call("save_weights_for_sampler",
                          {{"path", "merged-abcd1234"}, {"checkpoint_type", "merged_base"}});
  REQUIRE_MESSAGE(merged.status == 200, merged.body);
  CHECK(std::filesystem::is_regular_file(s.bucket_dir("lora") +
                                         "/merged-abcd1234/model.safetensors"));

  // Hotload the adapter: the deployment serves base + adapter with the trainer's logprobs.
  REQUIRE(s.hotload("lora", {{"identity", "ad-base-abcd1234"}}).status == 200);
  auto st = s.wait_hotload("lora", "ad-base-abcd1234");
  REQUIRE(st["current_snapshot_identity"] == "ad-base-abcd1234");
  REQUIRE(st["loaded_adapters"].size() == 1);
  CHECK(st["loaded_adapters"][0]["identity"] == "ad-base-abcd1234");
  CHECK(st["loaded_adapters"][0]["status"] == "loaded");
  const auto served = s.served_logprobs("lora", kProbe);
  check_parity(served, trained);
  double worst = 0;
  for (size_t i = 0; i < served.size(); ++i)
    worst = std::max(worst, std::abs(served[i] - trained[i]));
  MESSAGE("LoRA sampler-trainer worst |logprob difference| = " << worst);
  // A delta cannot follow an adapter.
  Reply bad =
      s.hotload("lora", {{"identity", "x"},
                         {"incremental_snapshot_metadata",
                          {{"previous_snapshot_identity", "ad-base-abcd1234"},
                           {"compression_format", std::string(flare::delta::kFormatName)}}}});
  CHECK(bad.status == 400);

  // An adapter of another base model is refused, naming both; the deployment keeps serving.
  s.create_ready("lora-m",
                 {{"baseModel", "accounts/local/models/tiny-gpt-m"}, {"minReplicaCount", 1}});
  std::filesystem::copy(s.bucket_dir("lora") + "/ad-base-abcd1234",
                        s.bucket_dir("lora-m") + "/ad-base-abcd1234",
                        std::filesystem::copy_options::recursive);
  Reply other =
      http("POST", s.url("/hot_load/v1/models/hot_load"),
           nlohmann::json{{"identity", "ad-base-abcd1234"}}.dump(),
           {s.bearer_header(), "fireworks-deployment: accounts/local/deployments/lora-m"});
  REQUIRE_MESSAGE(other.status == 200, other.body);
  auto refused = s.wait_hotload("lora-m", "ad-base-abcd1234");
  CHECK(refused["loading_state"]["stage"] == "error");
  CHECK(refused["loading_state"]["message"].get<std::string>().find(
            "the adapter was trained on base model 'accounts/local/models/tiny-gpt', this "
            "deployment serves 'tiny-gpt-m'") != std::string::npos);
  CHECK(refused["loaded_adapters"].empty());

  // The restarted emulator serves the same adapter.
  s.restart();
  s.wait_state("lora", "READY");
  for (int i = 0; i < 200 && s.hotload_status("lora").json()["replicas"].empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(s.served_logprobs("lora", kProbe) == served);

  // The merged checkpoint loads as full weights: close to the adapter (bf16 merge).
  REQUIRE(s.hotload("lora", {{"identity", "merged-abcd1234"}}).status == 200);
  st = s.wait_hotload("lora", "merged-abcd1234");
  REQUIRE(st["current_snapshot_identity"] == "merged-abcd1234");
  CHECK(st["loaded_adapters"].empty());
  const auto merged_lp = s.served_logprobs("lora", kProbe);
  for (size_t i = 0; i < merged_lp.size(); ++i) CHECK(std::abs(merged_lp[i] - trained[i]) < 5e-3);
}

namespace {

// The weights the replica of deployment `id` serves now: its newest snapshot file.
flare::emulator::Checkpoint served_weights(Server& s, const std::string& id) {
  std::string newest;
  long long newest_us = -1;
  int newest_n = -1;
  for (const auto& e : std::filesystem::directory_iterator(s.state_dir + "/replicas/" + id)) {
    long long us = 0;
    int n = 0;
    std::string name = e.path().filename().string();
    if (std::sscanf(name.c_str(), "snapshot-%lld-%d.safetensors", &us, &n) != 2) continue;
    if (us > newest_us || (us == newest_us && n > newest_n)) {
      newest = e.path().string(), newest_us = us, newest_n = n;
    }
  }
  REQUIRE(!newest.empty());
  return flare::emulator::read_checkpoint(newest);
}

// The trainer job's own weights, as it would hand them to a sampler: its saved state read
// back into a trainer here.
flare::emulator::Checkpoint trainer_weights(Job& job, const std::string& name) {
  Reply r = job.call("save_state", {{"path", name}});
  REQUIRE_MESSAGE(r.status == 200, r.body);
  std::ifstream in(job.s.state_dir + "/trainer_states/" + job.id + "/" + name + ".state",
                   std::ios::binary);
  REQUIRE(in);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto& cfg = *flare::model::builtin("tiny-gpt");
  flare::model::Trainer t(cfg, flare::model::init_weights(cfg), 1);
  t.load_state(bytes);
  return flare::emulator::to_checkpoint(t.sampler_weights());
}

void check_same_bits(const flare::emulator::Checkpoint& served,
                     const flare::emulator::Checkpoint& trained) {
  REQUIRE(served.size() == trained.size());
  for (size_t i = 0; i < served.size(); ++i) {
    CHECK(served[i].name == trained[i].name);
    CHECK(served[i].shape == trained[i].shape);
    CHECK_MESSAGE(served[i].data == trained[i].data, "tensor " << served[i].name);
  }
}

nlohmann::json chained(const std::string& previous) {
  return {{"previous_snapshot_identity", previous},
          {"compression_format", std::string(flare::delta::kFormatName)},
          {"checksum_format", "alder32"}};
}

}  // namespace

// The Fireworks SDK's WeightSyncer pins each delta to the snapshot it hotloaded last
// (its tests: step-2's previous_snapshot_identity is step-1), so the trainer writes each
// delta against its previous sampler snapshot and the deployment takes only that one.
TEST_CASE(
    "delta chain: 10 deltas in a row, each against the previous snapshot, serve the "
    "trainer's weights bit for bit") {
  Server s;
  s.create_ready("chain", {{"minReplicaCount", 1}});
  REQUIRE(create_job(s, "chain-t",
                     {{"trainingConfig", {{"baseModel", "accounts/local/models/tiny-gpt"}}},
                      {"hotLoadDeploymentId", "chain"}})
              .status == 200);
  wait_running(s, "chain-t");
  Job job{s, "chain-t"};
  train_step(job, 1e-2);
  Reply base = job.call("save_weights_for_sampler",
                        {{"path", "step-0-c0ffee00"}, {"checkpoint_type", "base"}});
  REQUIRE_MESSAGE(base.status == 200, base.body);
  REQUIRE(s.hotload("chain", {{"identity", "step-0-c0ffee00"}}).status == 200);
  REQUIRE(s.wait_hotload("chain", "step-0-c0ffee00")["current_snapshot_identity"] ==
          "step-0-c0ffee00");
  check_same_bits(served_weights(s, "chain"), trainer_weights(job, "check"));

  std::string previous = "step-0-c0ffee00";
  for (int k = 1; k <= 10; ++k) {
    CAPTURE(k);
    if (k == 6) {
      // A restart in the middle: the trainer's state comes back from save_state and its
      // previous snapshot is rebuilt from the bucket (base + 5 deltas).
      REQUIRE(job.call("save_state", {{"path", "mid"}}).status == 200);
      s.restart();
      wait_running(s, "chain-t");
      REQUIRE(job.call("load_state", {{"path", "mid"}}).status == 200);
    }
    train_step(job, 1e-2);
    std::string name = "step-" + std::to_string(k) + "-c0ffee00";
    Reply saved =
        job.call("save_weights_for_sampler", {{"path", name}, {"checkpoint_type", "delta"}});
    REQUIRE_MESSAGE(saved.status == 200, saved.body);
    CHECK(saved.json()["previous_snapshot_identity"] == previous);
    if (k == 3) {
      // Pinned to the first base (the old pattern): refused, naming both snapshots.
      Reply stale = s.hotload(
          "chain",
          {{"identity", name}, {"incremental_snapshot_metadata", chained("step-0-c0ffee00")}});
      CHECK(stale.status == 400);
      std::string why = stale.json()["error"]["message"];
      CHECK(why.find("step-0-c0ffee00") != std::string::npos);
      CHECK(why.find(previous) != std::string::npos);
    }
    Reply hl = s.hotload(
        "chain", {{"identity", name}, {"incremental_snapshot_metadata", chained(previous)}});
    REQUIRE_MESSAGE(hl.status == 200, hl.body);
    auto rep = s.wait_hotload("chain", name);
    REQUIRE_MESSAGE(rep["current_snapshot_identity"] == name, rep.dump());
    check_same_bits(served_weights(s, "chain"), trainer_weights(job, "check"));
    previous = name;
  }

  // A delta saved but never hotloaded breaks the chain: the next one is made against it, and
  // the deployment, which serves the one before, refuses it by name.
  train_step(job, 1e-2);
  REQUIRE(job.call("save_weights_for_sampler", {{"path", "skipped"}, {"checkpoint_type", "delta"}})
              .status == 200);
  train_step(job, 1e-2);
  REQUIRE(job.call("save_weights_for_sampler", {{"path", "after"}, {"checkpoint_type", "delta"}})
              .status == 200);
  Reply gap = s.hotload(
      "chain", {{"identity", "after"}, {"incremental_snapshot_metadata", chained(previous)}});
  CHECK(gap.status == 400);
  std::string why = gap.json()["error"]["message"];
  CHECK(why.find("'skipped'") != std::string::npos);
  CHECK(why.find(previous) != std::string::npos);
  // merged_base (the SDK's LoRA-folded export) is a full base here and restarts the chain.
  Reply merged = job.call("save_weights_for_sampler",
                          {{"path", "merged"}, {"checkpoint_type", "merged_base"}});
  REQUIRE_MESSAGE(merged.status == 200, merged.body);
  REQUIRE(s.hotload("chain", {{"identity", "merged"}}).status == 200);
  REQUIRE(s.wait_hotload("chain", "merged")["current_snapshot_identity"] == "merged");
  check_same_bits(served_weights(s, "chain"), trainer_weights(job, "check"));
}

TEST_CASE("after a restart, a delta whose previous snapshot left the bucket asks for a base") {
  Server s;
  REQUIRE(create_job(s, "gone-t",
                     {{"trainingConfig", {{"baseModel", "accounts/local/models/tiny-gpt"}}}})
              .status == 200);
  wait_running(s, "gone-t");
  Job job{s, "gone-t"};
  REQUIRE(
      job.call("save_weights_for_sampler", {{"path", "g-0"}, {"checkpoint_type", "base"}}).status ==
      200);
  train_step(job, 1e-2);
  REQUIRE(job.call("save_weights_for_sampler", {{"path", "g-1"}, {"checkpoint_type", "delta"}})
              .status == 200);
  std::string bucket =
      s.control("GET", "/v1/accounts/local/rlorTrainerJobs/gone-t").json()["hotLoadBucketUrl"];
  bucket = bucket.substr(7);
  CHECK(
      s.control("GET", "/v1/accounts/local/rlorTrainerJobs/gone-t").json()["lastSamplerSnapshot"] ==
      "g-1");
  s.restart();
  wait_running(s, "gone-t");
  std::filesystem::remove_all(bucket + "/g-0");
  Reply r = job.call("save_weights_for_sampler", {{"path", "g-2"}, {"checkpoint_type", "delta"}});
  CHECK(r.status == 409);
  std::string why = r.json()["error"]["message"];
  CHECK(why.find("'g-1'") != std::string::npos);
  CHECK(why.find("'g-0' is not in it") != std::string::npos);
  CHECK(why.find("save a base first") != std::string::npos);
  CHECK(
      job.call("save_weights_for_sampler", {{"path", "g-2"}, {"checkpoint_type", "base"}}).status ==
      200);
  CHECK(job.call("save_weights_for_sampler", {{"path", "g-3"}, {"checkpoint_type", "delta"}})
            .status == 200);
}

// The SDK's reattach_trainer: PATCH hotLoadTrainerJob, then wait for a fresh replica.
TEST_CASE("PATCH hotLoadTrainerJob moves a deployment to the trainer's bucket on a fresh replica") {
  Server s;
  s.create_ready("re", {{"minReplicaCount", 1}});
  REQUIRE(create_job(s, "re-a",
                     {{"trainingConfig", {{"baseModel", "accounts/local/models/tiny-gpt"}}},
                      {"hotLoadDeploymentId", "re"}})
              .status == 200);
  REQUIRE(
      create_job(s, "re-b", {{"trainingConfig", {{"baseModel", "accounts/local/models/tiny-gpt"}}}})
          .status == 200);
  wait_running(s, "re-a");
  wait_running(s, "re-b");
  Job a{s, "re-a"};
  REQUIRE(a.call("save_weights_for_sampler", {{"path", "a-0"}}).status == 200);
  REQUIRE(s.hotload("re", {{"identity", "a-0"}}).status == 200);
  REQUIRE(s.wait_hotload("re", "a-0")["current_snapshot_identity"] == "a-0");

  std::string patch = "/v1/accounts/local/deployments/re?updateMask=hot_load_trainer_job";
  Reply bad = s.control("PATCH", patch, {{"hotLoadTrainerJob", "re-b"}});
  CHECK(bad.status == 400);
  CHECK(bad.json()["error"]["message"].get<std::string>().find("hotLoadTrainerJob") !=
        std::string::npos);
  Reply ok =
      s.control("PATCH", patch, {{"hotLoadTrainerJob", "accounts/local/rlorTrainerJobs/re-b"}});
  REQUIRE_MESSAGE(ok.status == 200, ok.body);
  auto b_job = s.control("GET", "/v1/accounts/local/rlorTrainerJobs/re-b").json();
  CHECK(ok.json()["hotLoadTrainerJob"] == "accounts/local/rlorTrainerJobs/re-b");
  CHECK(ok.json()["hotLoadBucketUrl"] == b_job["hotLoadBucketUrl"]);
  // The fresh replica serves the base model; a snapshot of the new trainer loads from its bucket.
  auto rep = s.wait_hotload("re", "accounts/local/models/tiny-gpt");
  CHECK(rep["current_snapshot_identity"] == "accounts/local/models/tiny-gpt");
  Job b{s, "re-b"};
  REQUIRE(b.call("save_weights_for_sampler", {{"path", "b-0"}}).status == 200);
  REQUIRE(s.hotload("re", {{"identity", "b-0"}}).status == 200);
  CHECK(s.wait_hotload("re", "b-0")["current_snapshot_identity"] == "b-0");
  CHECK(s.hotload("re", {{"identity", "a-0"}}).status == 400);  // not in this bucket
}

TEST_CASE("a retried optim_step with the same x-request-id is answered once, not applied twice") {
  Server s(0.05);
  nlohmann::json tc = {{"baseModel", "accounts/local/models/tiny-gpt"}};
  REQUIRE(create_job(s, "once", {{"serviceMode", true}, {"trainingConfig", tc}}).status == 200);
  wait_running(s, "once");
  Job job{s, "once"};
  auto post = [&](const std::string& route, const nlohmann::json& body, const std::string& rid) {
    return http("POST", job.gateway() + route, body.dump(),
                {s.key_header(), s.bearer_header(), "x-request-id: " + rid});
  };
  nlohmann::json fb = {
      {"forward_backward_input", {{"data", {datum(kProbe)}}, {"loss_fn", "cross_entropy"}}}};
  nlohmann::json adam = {{"adam_params", {{"learning_rate", 1e-2}}}};
  REQUIRE(post("forward_backward", fb, "fb-1").status == 200);
  Reply first = post("optim_step", adam, "os-1");
  REQUIRE_MESSAGE(first.status == 200, first.body);
  CHECK(first.json()["step"] == 1);
  // The same request again (a retry after a lost response): the first answer, no second step.
  Reply again = post("optim_step", adam, "os-1");
  CHECK(again.status == 200);
  CHECK(again.body == first.body);
  auto logprobs = trainer_logprobs(job, kProbe);
  // A new request id is a new step.
  REQUIRE(post("forward_backward", fb, "fb-2").status == 200);
  CHECK(post("optim_step", adam, "os-2").json()["step"] == 2);
  CHECK(trainer_logprobs(job, kProbe) != logprobs);
  // A failed request is not remembered: its retry runs.
  CHECK(post("optim_step", {{"adam_params", {{"beta1", 1.5}}}}, "os-3").status == 400);
  CHECK(post("optim_step", adam, "os-3").json()["step"] == 3);
  CHECK(s.control("GET", "/admin/v1/faults").json()["replayed"] == 1);
}
