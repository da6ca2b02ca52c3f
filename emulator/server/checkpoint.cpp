#include "emulator/server/checkpoint.hpp"

#include <algorithm>
#include <cstring>
#include <map>
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
  for (const auto& spec : model::parameter_specs(cfg)) {
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
    model::Tensor m{spec.name, spec.shape, {}};
    size_t n = t.elements();
    m.data.resize(n);
    if (t.dtype == delta::DType::BF16) {
      for (size_t i = 0; i < n; ++i) {
        uint16_t b;
        std::memcpy(&b, t.data.data() + 2 * i, 2);
        m.data[i] = from_bf16_bits(b);
      }
    } else if (t.dtype == delta::DType::F32) {
      std::memcpy(m.data.data(), t.data.data(), n * 4);
    } else {
      throw std::invalid_argument("tensor '" + spec.name + "' has dtype " +
                                  std::string(delta::dtype_name(t.dtype)) +
                                  ", expected BF16 or F32");
    }
    out.push_back(std::move(m));
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
