// Trainer throughput (forward + backward, batch 64 x 64 tokens) with two
// threads against one thread, LoRA rank 8 training against full-weight
// training, decode throughput at batch 1 / 16 / 64 against batch 1 and with a
// LoRA adapter on every sequence against the base alone, from one run; and the
// size of a rank-8 adapter against a full snapshot. Prints a markdown table.
//   bench_train [model=tiny-gpt] [repeats=5]
// With --torch DIR: forward+backward of tiny-gpt and tiny-gpt-m on 1 and 2
// threads beside the PyTorch rates that run.sh left in DIR/<model>-<threads>
// (torch_train.py's "THREADS TOKENS_PER_S TOKENS_PER_CPU_S" line).
//   bench_train --torch DIR [repeats=5]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <string>
#include <thread>
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

double process_cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + double(t.tv_nsec) * 1e-9;
}

// Throughput by wall clock and per CPU-second (the latter tells the code's
// cost apart from contention when the machine is shared).
struct Rate {
  double wall = 0, cpu = 0;
};

// Keeps the best (fastest) of several timings of `tokens` tokens.
struct Timer {
  explicit Timer(double n) : tokens(n) {}
  double tokens;
  Rate best;
  Clock::time_point t0;
  double c0 = 0;
  void start() {
    t0 = Clock::now();
    c0 = process_cpu_seconds();
  }
  void stop() {
    best.wall = std::max(best.wall, tokens / seconds_since(t0));
    best.cpu = std::max(best.cpu, tokens / (process_cpu_seconds() - c0));
  }
};

// Best of `repeats` timings of forward_backward, in tokens per second.
Rate train_rate(const Config& c, int threads, const std::vector<Datum>& data, int repeats,
                const LoraConfig& lora = {}) {
  Trainer trainer(c, init_weights(c), threads, lora);
  const long tokens = trainer.forward_backward(data, LossFn::CrossEntropy, {}).tokens;  // warm-up
  Timer timer{double(tokens)};
  for (int r = 0; r < repeats; ++r) {
    timer.start();
    trainer.forward_backward(data, LossFn::CrossEntropy, {});
    timer.stop();
  }
  return timer.best;
}

double optim_ms(const Config& c) {
  Trainer trainer(c, init_weights(c), 1);
  const auto t0 = Clock::now();
  for (int i = 0; i < 5; ++i) trainer.optim_step({});
  return seconds_since(t0) * 1000.0 / 5;
}

// Decode `steps` tokens for `batch` sequences after an 8-token prefill each.
Rate decode_rate(const Model& model, int batch, int steps, int repeats,
                 const std::shared_ptr<const Adapter>& adapter = nullptr) {
  const int V = model.config().vocab;
  Timer timer{double(batch) * steps};
  for (int r = 0; r < repeats; ++r) {
    std::vector<std::unique_ptr<Model::Cache, void (*)(Model::Cache*)>> caches;
    std::vector<Model::Cache*> ptrs;
    const std::vector<int> prompt = {kBos, 'H', 'e', 'l', 'l', 'o', ',', ' '};
    for (int b = 0; b < batch; ++b) {
      caches.push_back(model.new_cache(adapter));
      model.prefill(*caches.back(), prompt, nullptr, nullptr);
      ptrs.push_back(caches.back().get());
    }
    std::vector<int> tokens(batch);
    std::vector<float> logits(size_t(batch) * V);
    timer.start();
    for (int s = 0; s < steps; ++s) {
      for (int b = 0; b < batch; ++b) tokens[b] = (s * 7 + b * 13) % 256;
      model.decode(ptrs, tokens, logits.data());
    }
    timer.stop();
  }
  return timer.best;
}

// PyTorch's rate from DIR/<model>-<threads>; false when the file is missing.
bool torch_rate(const std::string& dir, const std::string& model, int threads, Rate& r) {
  std::ifstream in(dir + "/" + model + "-" + std::to_string(threads));
  int t = 0;
  return bool(in >> t >> r.wall >> r.cpu) && t == threads;
}

// flare on 1 and 2 threads, timed alternately so that both see the same load,
// beside PyTorch.
int versus_torch(const std::string& dir, int repeats) {
  struct Row {
    std::string model;
    Rate flare[2], torch[2];
    bool have_torch[2];
  };
  std::vector<Row> rows;
  const std::vector<Datum> data = make_batch(64, 64);
  for (const char* name : {"tiny-gpt", "tiny-gpt-m"}) {
    const Config& c = *builtin(name);
    Row row{name, {}, {}, {}};
    Trainer one(c, init_weights(c), 1), two(c, init_weights(c), 2);
    Trainer* trainers[2] = {&one, &two};
    Timer timers[2] = {Timer{0}, Timer{0}};
    for (int k = 0; k < 2; ++k)  // warm-up
      timers[k].tokens =
          double(trainers[k]->forward_backward(data, LossFn::CrossEntropy, {}).tokens);
    for (int r = 0; r < repeats; ++r)
      for (int k = 0; k < 2; ++k) {
        timers[k].start();
        trainers[k]->forward_backward(data, LossFn::CrossEntropy, {});
        timers[k].stop();
      }
    for (int k = 0; k < 2; ++k) {
      row.flare[k] = timers[k].best;
      row.have_torch[k] = torch_rate(dir, name, k + 1, row.torch[k]);
    }
    rows.push_back(row);
  }
  double load[1] = {0};
  getloadavg(load, 1);

  std::printf(
      "## Trainer forward+backward, batch 64 x 64 tokens, flare against PyTorch (best of %d)\n\n",
      repeats);
  std::printf(
      "| model | threads | flare tokens/s | flare tokens per CPU-s | PyTorch tokens/s | "
      "PyTorch tokens per CPU-s | flare / PyTorch (per CPU-s) |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|\n");
  bool missing = false, cpu_goal = true;
  for (const Row& r : rows)
    for (int k = 0; k < 2; ++k) {
      std::printf("| %s | %d | %.0f | %.0f | ", r.model.c_str(), k + 1, r.flare[k].wall,
                  r.flare[k].cpu);
      if (r.have_torch[k]) {
        const double ratio = r.flare[k].cpu / r.torch[k].cpu;
        std::printf("%.0f | %.0f | %.2fx |\n", r.torch[k].wall, r.torch[k].cpu, ratio);
        if (k == 0) cpu_goal = cpu_goal && ratio >= 1.2;
      } else {
        std::printf("- | - | - |\n");
        missing = true;
      }
    }
  // On a shared machine a run may not get the cores it asks for: "CPUs busy" (CPU-seconds per
  // second) says how many the 1- and 2-thread runs had, and the per-CPU-second ratio what the
  // threads did with their share.
  std::printf(
      "\n| model | flare 2 threads / 1 thread (tokens/s) | CPUs busy, 1 / 2 threads | tokens per "
      "CPU-s, 2 threads / 1 thread | PyTorch 2 threads / 1 thread (tokens/s) |\n");
  std::printf("|---|---:|---:|---:|---:|\n");
  for (const Row& r : rows) {
    std::printf("| %s | %.2fx | %.2f / %.2f | %.2fx | ", r.model.c_str(),
                r.flare[1].wall / r.flare[0].wall, r.flare[0].wall / r.flare[0].cpu,
                r.flare[1].wall / r.flare[1].cpu, r.flare[1].cpu / r.flare[0].cpu);
    if (r.have_torch[0] && r.have_torch[1])
      std::printf("%.2fx |\n", r.torch[1].wall / r.torch[0].wall);
    else
      std::printf("- |\n");
  }
  std::printf("\nload average %.1f on %u hardware threads\n", load[0],
              std::thread::hardware_concurrency());
  if (missing)
    std::printf("PyTorch rows skipped: no rates in %s (python3-torch not installed?)\n",
                dir.c_str());
  else
    std::printf("goal >= 1.2x PyTorch's tokens per CPU-s on one thread, both models: %s\n",
                cpu_goal ? "met" : "NOT met");
  const double scaling = rows[1].flare[1].wall / rows[1].flare[0].wall;
  std::printf("goal 2 threads >= 1.7x 1 thread on tiny-gpt-m: %s (%.2fx)\n",
              scaling >= 1.7 ? "met" : "NOT met", scaling);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 2 && std::string(argv[1]) == "--torch") {
    const int repeats = argc > 3 ? std::atoi(argv[3]) : 5;
    if (repeats <= 0) {
      std::fprintf(stderr, "usage: bench_train --torch DIR [repeats=5]\n");
      return 2;
    }
    return versus_torch(argv[2], repeats);
  }
  const std::string name = argc > 1 ? argv[1] : "tiny-gpt";
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 5;
  const Config* cfg = builtin(name);
  if (!cfg || repeats <= 0) {
    std::fprintf(stderr, "usage: bench_train [model=tiny-gpt] [repeats=5]\n");
    return 2;
  }
  const Config& c = *cfg;
  const std::vector<Datum> data = make_batch(64, 64);

  const Rate one = train_rate(c, 1, data, repeats);
  const Rate two = train_rate(c, 2, data, repeats);
  const LoraConfig lora{8, 16, 1};
  const Rate lora_two = train_rate(c, 2, data, repeats, lora);
  const Model model(c, init_weights(c));
  const int steps = 64;
  const Rate d1 = decode_rate(model, 1, steps, repeats);
  const Rate d16 = decode_rate(model, 16, steps, repeats);
  const Rate d64 = decode_rate(model, 64, steps, repeats);
  // A trained-looking adapter (B nonzero) costs what any adapter costs.
  Weights adapter_w = init_lora(c, lora);
  for (Tensor& t : adapter_w)
    for (size_t i = 0; i < t.data.size(); ++i)
      if (t.data[i] == 0) t.data[i] = round_to_bf16(1e-3f * float(int(i % 7) - 3));
  const auto adapter =
      std::make_shared<const Adapter>(c, adapter_w, lora_scale(lora.alpha, lora.rank));
  const Rate d16_lora = decode_rate(model, 16, steps, repeats, adapter);
  size_t full_values = 0, adapter_values = 0;
  for (const TensorSpec& s : parameter_specs(c))
    full_values += size_t(s.shape[0]) * (s.shape.size() > 1 ? s.shape[1] : 1);
  for (const TensorSpec& s : lora_specs(c, lora.rank, lora.train_unembed))
    adapter_values += size_t(s.shape[0] * s.shape[1]);
  double load[1] = {0};
  getloadavg(load, 1);

  std::printf("## %s: d_model %d, %d layers, %d heads, d_ff %d (best of %d)\n\n", c.name.c_str(),
              c.d_model, c.n_layers, c.n_heads, c.d_ff, repeats);
  std::printf(
      "| measurement | tokens/s | tokens per CPU-s | baseline | tokens/s | tokens per CPU-s | "
      "ratio (wall) |\n");
  std::printf("|---|---:|---:|---|---:|---:|---:|\n");
  auto row = [](const char* what, Rate r, const char* base_name, Rate base) {
    std::printf("| %s | %.0f | %.0f | %s | %.0f | %.0f | %.2fx |\n", what, r.wall, r.cpu, base_name,
                base.wall, base.cpu, r.wall / base.wall);
  };
  row("train fwd+bwd 64x64, 2 threads", two, "1 thread", one);
  row("decode batch 16", d16, "batch 1", d1);
  row("decode batch 64", d64, "batch 1", d1);
  row("train fwd+bwd 64x64 LoRA rank 8, 2 threads", lora_two, "full weights, 2 threads", two);
  row("decode batch 16, LoRA rank 8 on every sequence", d16_lora, "base alone", d16);
  std::printf(
      "\ntrain goal 20000 tokens/s (wall, 2 threads): %s (%.2fx of goal); optim_step %.2f ms; "
      "load average %.1f on %u hardware threads\n",
      two.wall >= 20000 ? "met" : "NOT met", two.wall / 20000, optim_ms(c), load[0],
      std::thread::hardware_concurrency());
  std::printf(
      "LoRA rank 8 adapter (every projection): %zu bf16 values = %.1f KB against a full snapshot's "
      "%zu = %.1f KB (%.2f%%)\n",
      adapter_values, adapter_values * 2 / 1024.0, full_values, full_values * 2 / 1024.0,
      100.0 * double(adapter_values) / double(full_values));
  return 0;
}
