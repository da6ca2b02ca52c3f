#include "emulator/server/checkpoint.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

namespace flare::emulator {
namespace {

uint16_t bf16_bits(float x) {
  float r = model::round_to_bf16(x);
  uint32_t u;
  std::memcpy(&u, &r, 4);
  return static_cast<uint16_t>(u >> 16);
}

float from_bf16_bits(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

std::string shape_text(const std::vector<uint64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// The values of a BF16 or F32 tensor as floats.
std::vector<float> to_floats(const delta::TensorView& t, const std::string& name) {
  const size_t n = t.elements();
  std::vector<float> out(n);
  if (t.dtype == delta::DType::BF16) {
    for (size_t i = 0; i < n; ++i) {
      uint16_t b;
      std::memcpy(&b, t.data.data() + 2 * i, 2);
      out[i] = from_bf16_bits(b);
    }
  } else if (t.dtype == delta::DType::F32) {
    std::memcpy(out.data(), t.data.data(), n * 4);
  } else {
    throw std::invalid_argument("tensor '" + name + "' has dtype " +
                                std::string(delta::dtype_name(t.dtype)) + ", expected BF16 or F32");
  }
  return out;
}

}  // namespace

Checkpoint to_checkpoint(const model::Weights& w) {
  Checkpoint out;
  out.reserve(w.size());
  for (const auto& t : w) {
    delta::Tensor d;
    d.name = t.name;
    d.dtype = delta::DType::BF16;
    d.shape.assign(t.shape.begin(), t.shape.end());
    d.data.resize(t.data.size() * 2);
    for (size_t i = 0; i < t.data.size(); ++i) {
      uint16_t b = bf16_bits(t.data[i]);
      std::memcpy(d.data.data() + 2 * i, &b, 2);
    }
    out.push_back(std::move(d));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

std::vector<delta::TensorView> views(const Checkpoint& c) {
  std::vector<delta::TensorView> v;
  v.reserve(c.size());
  for (const auto& t : c) v.push_back(t.view());
  return v;
}

model::Weights to_weights(const model::Config& cfg, const std::vector<delta::TensorView>& tensors) {
  std::map<std::string, const delta::TensorView*> by_name;
  for (const auto& t : tensors) by_name[t.name] = &t;
  model::Weights out;
  std::vector<model::TensorSpec> specs = model::parameter_specs(cfg);
  // An untied output head (a merged lm_head adapter) is the one optional tensor.
  const model::TensorSpec head = model::untied_head_spec(cfg);
  if (by_name.count(head.name)) specs.push_back(head);
  for (const auto& spec : specs) {
    auto it = by_name.find(spec.name);
    if (it == by_name.end()) {
      throw std::invalid_argument("checkpoint is missing tensor '" + spec.name + "' of " +
                                  cfg.name);
    }
    const delta::TensorView& t = *it->second;
    std::vector<uint64_t> want(spec.shape.begin(), spec.shape.end());
    if (t.shape != want) {
      throw std::invalid_argument("tensor '" + spec.name + "' has shape " + shape_text(t.shape) +
                                  ", expected " + shape_text(want));
    }
    out.push_back({spec.name, spec.shape, to_floats(t, spec.name)});
    by_name.erase(it);
  }
  if (!by_name.empty()) {
    throw std::invalid_argument("checkpoint has tensor '" + by_name.begin()->first + "' that " +
                                cfg.name + " does not have");
  }
  return out;
}

Checkpoint read_checkpoint(const std::string& path) {
  auto file = delta::SafetensorsFile::open(path);
  Checkpoint out;
  for (const auto& v : file.tensors()) {
    delta::Tensor t{v.name, v.dtype, v.shape, {v.data.begin(), v.data.end()}};
    out.push_back(std::move(t));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

void write_checkpoint(const std::string& path, const Checkpoint& c) {
  auto v = views(c);
  delta::write_safetensors(path, v, {{"format", "pt"}});
}

}  // namespace flare::emulator

namespace flare::emulator {
namespace {

constexpr const char* kPeftPrefix = "base_model.model.";

void write_text_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) throw std::runtime_error("cannot write " + tmp);
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace

float PeftAdapter::scale() const {
  return rslora ? float(alpha / std::sqrt(double(rank))) : model::lora_scale(alpha, rank);
}

bool is_peft_adapter_dir(const std::string& dir) {
  return std::filesystem::is_regular_file(dir + "/" + kAdapterConfigFile);
}

void write_peft_adapter(const std::string& dir, const std::string& base_model, int rank,
                        double alpha, const model::Weights& lora) {
  std::filesystem::create_directories(dir);
  model::Weights named = lora;
  for (auto& t : named) t.name = kPeftPrefix + t.name;
  const std::string tensors = dir + "/" + kAdapterFile;
  write_checkpoint(tensors + ".tmp", to_checkpoint(named));
  std::filesystem::rename(tensors + ".tmp", tensors);
  nlohmann::json targets = nlohmann::json::array();
  for (const char* t : model::kLoraTargetNames) targets.push_back(t);
  if (model::lora_has_head(lora)) targets.push_back(model::kLoraHeadName);
  const nlohmann::json config = {{"peft_type", "LORA"},
                                 {"task_type", "CAUSAL_LM"},
                                 {"base_model_name_or_path", base_model},
                                 {"r", rank},
                                 {"lora_alpha", alpha},
                                 {"lora_dropout", 0.0},
                                 {"target_modules", targets},
                                 {"bias", "none"},
                                 {"fan_in_fan_out", false},
                                 {"inference_mode", true},
                                 {"init_lora_weights", true},
                                 {"use_rslora", false},
                                 {"use_dora", false},
                                 {"modules_to_save", nullptr},
                                 {"layers_to_transform", nullptr},
                                 {"layers_pattern", nullptr},
                                 {"rank_pattern", nlohmann::json::object()},
                                 {"alpha_pattern", nlohmann::json::object()},
                                 {"revision", nullptr}};
  write_text_atomically(dir + "/" + kAdapterConfigFile, config.dump(2) + "\n");
}

PeftAdapter read_peft_adapter(const model::Config& cfg, const std::string& dir,
                              const std::function<void(const std::string&)>& check_base) {
  const std::string config_path = dir + "/" + kAdapterConfigFile;
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument(std::string(kAdapterConfigFile) + ": " + what);
  };
  std::ifstream in(config_path, std::ios::binary);
  if (!in) throw std::invalid_argument("no " + std::string(kAdapterConfigFile) + " in " + dir);
  nlohmann::json c = nlohmann::json::parse(in, nullptr, false);
  if (!c.is_object()) fail("not a JSON object");
  // Optional fields of the right type or null; another tool's file may hold anything.
  auto text = [&](const char* f, const std::string& fallback) {
    auto it = c.find(f);
    if (it == c.end() || it->is_null()) return fallback;
    if (!it->is_string()) fail(std::string("field '") + f + "' must be a string");
    return it->get<std::string>();
  };
  auto flag = [&](const char* f) {
    auto it = c.find(f);
    if (it == c.end() || it->is_null()) return false;
    if (!it->is_boolean()) fail(std::string("field '") + f + "' must be true or false");
    return it->get<bool>();
  };
  if (c.value("peft_type", nlohmann::json()) != "LORA")
    fail("field 'peft_type' must be \"LORA\", got " +
         c.value("peft_type", nlohmann::json()).dump());
  if (c.contains("task_type") && !c["task_type"].is_null() && c["task_type"] != "CAUSAL_LM")
    fail("field 'task_type' must be \"CAUSAL_LM\", got " + c["task_type"].dump());
  PeftAdapter a;
  if (!c.contains("r") || !c["r"].is_number_integer()) fail("field 'r' (an integer) is required");
  a.rank = c["r"].get<int>();
  if (a.rank < 1 || a.rank > model::kMaxLoraRank)
    fail("field 'r' is " + std::to_string(a.rank) + ", outside [1, " +
         std::to_string(model::kMaxLoraRank) + "]");
  a.alpha = 8;  // PEFT's default when the field is absent
  if (c.contains("lora_alpha") && !c["lora_alpha"].is_null()) {
    if (!c["lora_alpha"].is_number()) fail("field 'lora_alpha' must be a number");
    a.alpha = c["lora_alpha"].get<double>();
  }
  if (!(a.alpha > 0) || !std::isfinite(a.alpha)) fail("field 'lora_alpha' must be > 0");
  a.rslora = flag("use_rslora");
  a.base_model = text("base_model_name_or_path", "");
  if (check_base) check_base(a.base_model);
  for (const char* f : {"use_dora", "fan_in_fan_out"})
    if (flag(f)) fail(std::string("field '") + f + "' is true, which is not supported");
  if (text("bias", "none") != "none") fail("field 'bias' must be \"none\"");
  for (const char* f : {"rank_pattern", "alpha_pattern"})
    if (c.contains(f) && !c[f].is_null() && !c[f].empty())
      fail(std::string("field '") + f + "' is not supported (one rank and alpha for every module)");
  for (const char* f : {"layers_to_transform", "modules_to_save"})
    if (c.contains(f) && !c[f].is_null()) fail(std::string("field '") + f + "' is not supported");
  std::set<std::string> targets;
  if (!c.contains("target_modules") || !c["target_modules"].is_array())
    fail("field 'target_modules' (a list of module names) is required");
  for (const auto& t : c["target_modules"]) {
    const std::string name = t.is_string() ? t.get<std::string>() : t.dump();
    if (name != model::kLoraHeadName &&
        std::find_if(std::begin(model::kLoraTargetNames), std::end(model::kLoraTargetNames),
                     [&](const char* k) { return name == k; }) == std::end(model::kLoraTargetNames))
      fail("target module '" + name +
           "' is not a LoRA target of this model (q_proj, k_proj, v_proj, o_proj, gate_proj, "
           "up_proj, down_proj, lm_head)");
    targets.insert(name);
  }

  const std::string tensors_path = dir + "/" + kAdapterFile;
  auto file = delta::SafetensorsFile::open(tensors_path);
  std::map<std::string, const delta::TensorView*> by_name;
  for (const auto& t : file.tensors()) by_name[t.name] = &t;
  a.weights.clear();
  for (const model::TensorSpec& spec : model::lora_specs(cfg, a.rank, true)) {
    const std::string name = kPeftPrefix + spec.name;
    // "model.layers.N.mlp.up_proj.lora_A.weight" -> "up_proj"; "lm_head.lora_A.weight" -> "lm_head"
    const std::string path = spec.name.substr(0, spec.name.rfind(".lora_"));
    const std::string module = path.substr(path.rfind('.') + 1);
    model::Tensor t{spec.name, spec.shape, {}};
    auto it = by_name.find(name);
    if (!targets.count(module)) {
      if (it != by_name.end())
        throw std::invalid_argument(tensors_path + ": tensor '" + name + "' of module '" + module +
                                    "', which target_modules does not list");
      if (module == model::kLoraHeadName) continue;  // no head adapter: the head stays the base's
      t.data.assign(size_t(spec.shape[0] * spec.shape[1]), 0.0f);
    } else {
      if (it == by_name.end())
        throw std::invalid_argument(tensors_path + ": missing tensor '" + name + "'");
      std::vector<uint64_t> want(spec.shape.begin(), spec.shape.end());
      if (it->second->shape != want)
        throw std::invalid_argument(tensors_path + ": tensor '" + name + "' has shape " +
                                    shape_text(it->second->shape) + ", expected " +
                                    shape_text(want));
      t.data = to_floats(*it->second, name);
      by_name.erase(it);
    }
    a.weights.push_back(std::move(t));
  }
  if (!by_name.empty())
    throw std::invalid_argument(tensors_path + ": tensor '" + by_name.begin()->first +
                                "' is not a LoRA A/B of " + cfg.name);
  return a;
}

}  // namespace flare::emulator
