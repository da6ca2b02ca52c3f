// The wire names of the built-in losses (Tinker's where Tinker has the loss).
#include <array>
#include <utility>

#include "emulator/model/model.hpp"

namespace flare::model {

namespace {

constexpr std::array<std::pair<LossFn, const char*>, 9> kNames = {{
    {LossFn::CrossEntropy, "cross_entropy"},
    {LossFn::ImportanceSampling, "importance_sampling"},
    {LossFn::Ppo, "ppo"},
    {LossFn::Cispo, "cispo"},
    {LossFn::Grpo, "grpo"},
    {LossFn::DrGrpo, "dr_grpo"},
    {LossFn::Gspo, "gspo"},
    {LossFn::Reinforce, "reinforce"},
    {LossFn::Dpo, "dpo"},
}};

}  // namespace

const char* loss_name(LossFn fn) {
  for (const auto& [f, name] : kNames)
    if (f == fn) return name;
  return "?";
}

bool parse_loss_name(std::string_view name, LossFn& out) {
  for (const auto& [f, n] : kNames)
    if (name == n) {
      out = f;
      return true;
    }
  return false;
}

std::string loss_names() {
  std::string s;
  for (const auto& [f, name] : kNames) s += (s.empty() ? "" : ", ") + std::string(name);
  return s;
}

}  // namespace flare::model
