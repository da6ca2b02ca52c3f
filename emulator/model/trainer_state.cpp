// Trainer state file, little-endian:
//   magic "FLARETRN" | u32 version | u32 name length | name bytes
//   | i32 vocab, d_model, n_layers, n_heads, d_ff, max_seq
//   | (version 2) i32 lora rank | f64 lora alpha
//   | i64 step | u64 n
//   | f32[n] trained weights | f32[n] adam m | f32[n] adam v | f32[n] pending gradient
//   | u64 FNV-1a of everything before it
// The trained weights are the master weights, or the adapter (lora_specs order)
// when the rank is > 0; the frozen base is not stored. Version 1 (no LoRA
// fields) still loads. Holding the pending gradient as well makes a reload
// bit-identical even between forward_backward and optim_step.
#include <cstring>
#include <stdexcept>
#include <string>

#include "emulator/model/trainer_impl.hpp"

namespace flare::model {

namespace {

constexpr char kMagic[8] = {'F', 'L', 'A', 'R', 'E', 'T', 'R', 'N'};
constexpr uint32_t kVersion = 2;

uint64_t fnv1a(const char* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ uint8_t(p[i])) * 0x100000001b3ull;
  return h;
}

template <class T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

struct Reader {
  std::string_view bytes;
  size_t at = 0;

  void need(size_t n, const char* what) {
    if (bytes.size() - at < n)
      throw std::invalid_argument("trainer state: truncated at byte " + std::to_string(at) +
                                  " while reading " + what);
  }
  template <class T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, bytes.data() + at, sizeof v);
    at += sizeof v;
    return v;
  }
  void floats(std::vector<float>& dst, size_t n, const char* what) {
    need(n * sizeof(float), what);
    dst.resize(n);
    std::memcpy(dst.data(), bytes.data() + at, n * sizeof(float));
    at += n * sizeof(float);
  }
};

}  // namespace

std::string Trainer::save_state() const {
  const Impl& m = *impl_;
  std::string out(kMagic, sizeof kMagic);
  put(out, kVersion);
  put(out, uint32_t(m.cfg.name.size()));
  out += m.cfg.name;
  for (int v :
       {m.cfg.vocab, m.cfg.d_model, m.cfg.n_layers, m.cfg.n_heads, m.cfg.d_ff, m.cfg.max_seq})
    put(out, int32_t(v));
  put(out, int32_t(m.lora.rank));
  put(out, double(m.lora.rank > 0 ? m.lora.alpha : 0.0));
  put(out, int64_t(m.step));
  put(out, uint64_t(m.trained_count()));
  for (const Tensor& t : m.trained())
    out.append(reinterpret_cast<const char*>(t.data.data()), t.data.size() * sizeof(float));
  for (const std::vector<float>* v : {&m.adam_m, &m.adam_v, &m.grad})
    out.append(reinterpret_cast<const char*>(v->data()), v->size() * sizeof(float));
  put(out, fnv1a(out.data(), out.size()));
  return out;
}

void Trainer::load_state(std::string_view bytes) {
  Impl& m = *impl_;
  Reader r{bytes};
  r.need(sizeof kMagic, "magic");
  if (std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0)
    throw std::invalid_argument("trainer state: bad magic (not a flare trainer state)");
  r.at = sizeof kMagic;
  const uint32_t version = r.get<uint32_t>("version");
  if (version != 1 && version != kVersion)
    throw std::invalid_argument("trainer state: unsupported version " + std::to_string(version) +
                                " (expected 1 or " + std::to_string(kVersion) + ")");
  const uint32_t name_len = r.get<uint32_t>("config name length");
  r.need(name_len, "config name");
  const std::string name(bytes.substr(r.at, name_len));
  r.at += name_len;
  if (name != m.cfg.name)
    throw std::invalid_argument("trainer state: saved for model '" + name + "', this trainer is '" +
                                m.cfg.name + "'");
  const char* fields[] = {"vocab", "d_model", "n_layers", "n_heads", "d_ff", "max_seq"};
  const int expected[] = {m.cfg.vocab,   m.cfg.d_model, m.cfg.n_layers,
                          m.cfg.n_heads, m.cfg.d_ff,    m.cfg.max_seq};
  for (int i = 0; i < 6; ++i) {
    const int32_t v = r.get<int32_t>(fields[i]);
    if (v != expected[i])
      throw std::invalid_argument("trainer state: " + std::string(fields[i]) + " is " +
                                  std::to_string(v) + ", this model has " +
                                  std::to_string(expected[i]));
  }
  const int32_t rank = version >= 2 ? r.get<int32_t>("lora rank") : 0;
  const double alpha = version >= 2 ? r.get<double>("lora alpha") : 0.0;
  if (rank != m.lora.rank)
    throw std::invalid_argument("trainer state: lora rank is " + std::to_string(rank) +
                                ", this trainer's is " + std::to_string(m.lora.rank));
  if (rank > 0 && alpha != m.lora.alpha)
    throw std::invalid_argument("trainer state: lora alpha is " + std::to_string(alpha) +
                                ", this trainer's is " + std::to_string(m.lora.alpha));
  const int64_t step = r.get<int64_t>("step");
  if (step < 0) throw std::invalid_argument("trainer state: negative step");
  const uint64_t n = r.get<uint64_t>("parameter count");
  if (n != m.trained_count())
    throw std::invalid_argument(
        "trainer state: holds " + std::to_string(n) + " parameters, this trainer has " +
        std::to_string(m.trained_count()) +
        (rank > 0 ? " (an adapter with and one without lm_head: train_unembed differs)" : ""));
  std::vector<float> master, adam_m, adam_v, grad;
  r.floats(master, n, "master weights");
  r.floats(adam_m, n, "adam m");
  r.floats(adam_v, n, "adam v");
  r.floats(grad, n, "gradient");
  const size_t body = r.at;
  const uint64_t sum = r.get<uint64_t>("checksum");
  if (r.at != bytes.size())
    throw std::invalid_argument("trainer state: " + std::to_string(bytes.size() - r.at) +
                                " unexpected trailing bytes at byte " + std::to_string(r.at));
  if (sum != fnv1a(bytes.data(), body))
    throw std::invalid_argument("trainer state: checksum mismatch (corrupted data)");

  Weights& trained = m.trained();
  for (size_t ti = 0; ti < trained.size(); ++ti) {
    std::vector<float>& w = trained[ti].data;
    std::copy_n(master.begin() + m.trained_offsets()[ti], w.size(), w.begin());
  }
  m.adam_m = std::move(adam_m);
  m.adam_v = std::move(adam_v);
  m.grad = std::move(grad);
  m.step = long(step);
  m.refresh_compute_weights();
}

}  // namespace flare::model
