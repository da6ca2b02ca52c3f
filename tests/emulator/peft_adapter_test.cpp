// PEFT adapter folders: flare's own round-trip, and another tool's configs refused
// naming the field or tensor.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "emulator/server/checkpoint.hpp"
#include "fixture.hpp"

namespace fs = std::filesystem;
using namespace flare;

namespace {

struct Folder {
  std::string dir = test::make_temp_dir();
  ~Folder() { fs::remove_all(dir); }
  void config(const nlohmann::json& j) const {
    std::ofstream(dir + "/adapter_config.json") << j.dump();
  }
};

std::string error_of(const model::Config& cfg, const std::string& dir) {
  try {
    emulator::read_peft_adapter(cfg, dir);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("a PEFT folder round-trips the adapter (bf16) with its rank and alpha") {
  const model::Config& cfg = *model::builtin("tiny-gpt");
  model::Weights lora = model::init_lora(cfg, {4, 12, 3});
  lora[1].data[5] = 0.25f;  // a nonzero B value
  Folder f;
  emulator::write_peft_adapter(f.dir, "accounts/local/models/tiny-gpt", 4, 12, lora);
  const emulator::PeftAdapter a = emulator::read_peft_adapter(cfg, f.dir);
  CHECK(a.rank == 4);
  CHECK(a.alpha == 12);
  CHECK(a.scale() == model::lora_scale(12, 4));
  CHECK(a.base_model == "accounts/local/models/tiny-gpt");
  REQUIRE(a.weights.size() == lora.size());
  CHECK(model::lora_has_head(a.weights));  // lm_head's pair (train_unembed) round-trips too
  for (size_t i = 0; i < lora.size(); ++i) {
    CHECK(a.weights[i].name == lora[i].name);
    CHECK(a.weights[i].data == lora[i].data);  // init_lora values are bf16-exact
  }
}

TEST_CASE("PEFT configs flare cannot serve are refused naming the field") {
  const model::Config& cfg = *model::builtin("tiny-gpt");
  Folder f;
  emulator::write_peft_adapter(f.dir, "tiny-gpt", 4, 8, model::init_lora(cfg, {4, 8, 1}));
  const nlohmann::json good = {
      {"peft_type", "LORA"},
      {"r", 4},
      {"lora_alpha", 8},
      {"target_modules",
       {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"}}};
  auto with = [&](const char* key, const nlohmann::json& value) {
    nlohmann::json j = good;
    j[key] = value;
    f.config(j);
    return error_of(cfg, f.dir);
  };
  CHECK(with("peft_type", "IA3") ==
        "adapter_config.json: field 'peft_type' must be \"LORA\", got \"IA3\"");
  CHECK(with("r", 65) == "adapter_config.json: field 'r' is 65, outside [1, 64]");
  CHECK(with("r", "4") == "adapter_config.json: field 'r' (an integer) is required");
  CHECK(with("lora_alpha", -1) == "adapter_config.json: field 'lora_alpha' must be > 0");
  CHECK(with("use_dora", true) ==
        "adapter_config.json: field 'use_dora' is true, which is not supported");
  CHECK(with("use_rslora", "yes") ==
        "adapter_config.json: field 'use_rslora' must be true or false");
  CHECK(with("base_model_name_or_path", 7) ==
        "adapter_config.json: field 'base_model_name_or_path' must be a string");
  CHECK(with("bias", "all") == "adapter_config.json: field 'bias' must be \"none\"");
  CHECK(with("rank_pattern", {{"q_proj", 8}}).find("field 'rank_pattern' is not supported") !=
        std::string::npos);
  CHECK(with("target_modules", {"q_proj", "embed_tokens"}).find("target module 'embed_tokens'") !=
        std::string::npos);
  CHECK(with("target_modules",
             {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})
            .find("tensor 'base_model.model.lm_head.lora_A.weight' of module 'lm_head', which "
                  "target_modules does not list") != std::string::npos);
  CHECK(with("task_type", "SEQ_CLS") ==
        "adapter_config.json: field 'task_type' must be \"CAUSAL_LM\", got \"SEQ_CLS\"");
  // A module the config leaves out must have no tensors in the file.
  CHECK(
      with("target_modules", {"q_proj"})
          .find("tensor 'base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight' of module "
                "'k_proj', which target_modules does not list") != std::string::npos);
  // The rank in the config must match the tensors.
  CHECK(with("r", 8).find("has shape [4, 64], expected [8, 64]") != std::string::npos);
  // Another model's adapter: shapes do not fit.
  f.config(good);
  CHECK(error_of(*model::builtin("tiny-gpt-m"), f.dir).find("expected [4, 128]") !=
        std::string::npos);
  fs::remove(f.dir + "/adapter_config.json");
  CHECK(error_of(cfg, f.dir).find("no adapter_config.json in ") == 0);
}
