// Trainer throughput (forward + backward, batch 64 x 64 tokens) with two
// threads against one thread, and decode throughput at batch 1 / 16 / 64
// against batch 1, from one run. Prints a markdown table.
//   bench_train [model=tiny-gpt] [repeats=5]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "emulator/model/model.hpp"

using namespace flare::model;
using Clock = std::chrono::steady_clock;

namespace {

std::vector<Datum> make_batch(int batch, int len) {
  std::vector<Datum> data;
  uint64_t x = 12345;
  for (int b = 0; b < batch; ++b) {
    Datum d;
    std::vector<int> seq{kBos};
    for (int t = 0; t < len; ++t) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      seq.push_back(int((x >> 33) % 256));
    }
    d.tokens.assign(seq.begin(), seq.end() - 1);
    d.target_tokens.assign(seq.begin() + 1, seq.end());
    data.push_back(std::move(d));
  }
  return data;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Best of `repeats` timings of forward_backward, in tokens per second.
double train_tokens_per_s(const Config& c, int threads, const std::vector<Datum>& data,
                          int repeats) {
  Trainer trainer(c, init_weights(c), threads);
  long tokens = trainer.forward_backward(data, LossFn::CrossEntropy, {}).tokens;  // warm-up
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = Clock::now();
    trainer.forward_backward(data, LossFn::CrossEntropy, {});
    best = std::min(best, seconds_since(t0));
  }
  return double(tokens) / best;
}

double optim_ms(const Config& c) {
  Trainer trainer(c, init_weights(c), 1);
  const auto t0 = Clock::now();
  for (int i = 0; i < 5; ++i) trainer.optim_step({});
  return seconds_since(t0) * 1000.0 / 5;
}

// Decode `steps` tokens for `batch` sequences after an 8-token prefill each.
double decode_tokens_per_s(const Model& model, int batch, int steps, int repeats) {
  const int V = model.config().vocab;
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    std::vector<std::unique_ptr<Model::Cache, void (*)(Model::Cache*)>> caches;
    std::vector<Model::Cache*> ptrs;
    const std::vector<int> prompt = {kBos, 'H', 'e', 'l', 'l', 'o', ',', ' '};
    for (int b = 0; b < batch; ++b) {
      caches.push_back(model.new_cache());
      model.prefill(*caches.back(), prompt, nullptr, nullptr);
      ptrs.push_back(caches.back().get());
    }
    std::vector<int> tokens(batch);
    std::vector<float> logits(size_t(batch) * V);
    const auto t0 = Clock::now();
    for (int s = 0; s < steps; ++s) {
      for (int b = 0; b < batch; ++b) tokens[b] = (s * 7 + b * 13) % 256;
      model.decode(ptrs, tokens, logits.data());
    }
    best = std::min(best, seconds_since(t0));
  }
  return double(batch) * steps / best;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string name = argc > 1 ? argv[1] : "tiny-gpt";
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 5;
  const Config* cfg = builtin(name);
  if (!cfg || repeats <= 0) {
    std::fprintf(stderr, "usage: bench_train [model=tiny-gpt] [repeats=5]\n");
    return 2;
  }
  const Config& c = *cfg;
  const std::vector<Datum> data = make_batch(64, 64);

  const double one = train_tokens_per_s(c, 1, data, repeats);
  const double two = train_tokens_per_s(c, 2, data, repeats);
  const Model model(c, init_weights(c));
  const int steps = 64;
  const double d1 = decode_tokens_per_s(model, 1, steps, repeats);
  const double d16 = decode_tokens_per_s(model, 16, steps, repeats);
  const double d64 = decode_tokens_per_s(model, 64, steps, repeats);

  std::printf("## %s: d_model %d, %d layers, %d heads, d_ff %d\n\n", c.name.c_str(), c.d_model,
              c.n_layers, c.n_heads, c.d_ff);
  std::printf("| measurement | tokens/s | baseline | tokens/s | ratio |\n");
  std::printf("|---|---:|---|---:|---:|\n");
  std::printf("| train fwd+bwd 64x64, 2 threads | %.0f | 1 thread | %.0f | %.2fx |\n", two, one,
              two / one);
  std::printf("| decode batch 16 | %.0f | batch 1 | %.0f | %.2fx |\n", d16, d1, d16 / d1);
  std::printf("| decode batch 64 | %.0f | batch 1 | %.0f | %.2fx |\n", d64, d1, d64 / d1);
  std::printf("\ntrain goal 20000 tokens/s: %s (%.2fx of goal); optim_step %.2f ms\n",
              two >= 20000 ? "met" : "NOT met", two / 20000, optim_ms(c));
  return 0;
}
