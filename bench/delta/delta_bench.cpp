// Delta compression benchmark: flare-delta-v1 against zstd -3, zstd -3
// --patch-from and dense XOR + zstd -3, all measured in this run.
//
// Run (about three minutes on 2 cores, needs ~8 GB of RAM and of /tmp):
//   cmake --build build --target bench_delta && build/bench/delta/bench_delta
// Options: --params N (default 268435456), --dir DIR (default /tmp), --quick (32M params).
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "delta/adler32.hpp"
#include "delta/codec.hpp"
#include "delta/safetensors.hpp"
#include "runtime/file_io.hpp"
#include "runtime/thread_pool.hpp"
#include "synthetic.hpp"

namespace fs = std::filesystem;
using namespace flare;

namespace {

bool keep_files = false;  // --keep: leave the last scenario's files for profiling

double cpu_seconds() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
         1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::vector<std::byte> slurp(const std::string& path) {
  std::vector<std::byte> out(fs::file_size(path));
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f || std::fread(out.data(), 1, out.size(), f) != out.size())
    throw std::runtime_error("read " + path);
  std::fclose(f);
  return out;
}

size_t zstd3(std::span<const std::byte> data, double* seconds = nullptr) {
  std::vector<std::byte> out(ZSTD_compressBound(data.size()));
  double t0 = now();
  size_t n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 3);
  if (seconds) *seconds = now() - t0;
  if (ZSTD_isError(n)) throw std::runtime_error(ZSTD_getErrorName(n));
  return n;
}

// `zstd -3 --patch-from=base next` with the zstd program.
size_t zstd_patch_from(const std::string& base, const std::string& next, const std::string& out) {
  std::string cmd =
      "zstd -3 -q -f --patch-from='" + base + "' '" + next + "' -o '" + out + "' 2>/dev/null";
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("failed: " + cmd);
  size_t n = fs::file_size(out);
  fs::remove(out);
  return n;
}

// Runs one encode_files or apply_files in a fresh process (`mode` is
// --encode-child or --apply-child), so its time, CPU and peak RSS are its own.
struct ChildRun {
  double seconds = 0, cpu = 0;
  long max_rss_kb = 0;
};
ChildRun run_in_child(const char* mode, const std::string& a, const std::string& b,
                      const std::string& out) {
  std::string cmd = "/proc/" + std::to_string(getpid()) + "/exe";
  int pipefd[2];
  if (pipe(pipefd) != 0) throw std::runtime_error("pipe");
  pid_t pid = fork();
  if (pid == 0) {
    dup2(pipefd[1], 1);
    execl(cmd.c_str(), cmd.c_str(), mode, a.c_str(), b.c_str(), out.c_str(), nullptr);
    _exit(127);
  }
  close(pipefd[1]);
  char buf[256] = {};
  ssize_t n = read(pipefd[0], buf, sizeof buf - 1);
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (n <= 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error(std::string(mode) + " child failed");
  ChildRun r;
  std::sscanf(buf, "%lf %lf %ld", &r.seconds, &r.cpu, &r.max_rss_kb);
  return r;
}

// Best wall time of three run_in_child runs (with that run's CPU time) and the
// largest peak RSS; after(r) runs after run r.
ChildRun best_of_3_in_child(const char* mode, const std::string& a, const std::string& b,
                            const std::string& out, const std::function<void(int)>& after = {}) {
  ChildRun best;
  best.seconds = 1e9;
  for (int r = 0; r < 3; ++r) {
    ChildRun one = run_in_child(mode, a, b, out);
    if (after) after(r);
    if (one.seconds < best.seconds) best.seconds = one.seconds, best.cpu = one.cpu;
    best.max_rss_kb = std::max(best.max_rss_kb, one.max_rss_kb);
  }
  return best;
}

template <typename Fn>
int child_main(Fn&& fn) {
  double t0 = now(), c0 = cpu_seconds();
  fn();
  double t = now() - t0, c = cpu_seconds() - c0;
  // VmHWM belongs to this address space; ru_maxrss would carry the forking parent's peak.
  long hwm_kb = 0;
  if (FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "VmHWM: %ld kB", &hwm_kb) == 1) break;
    std::fclose(f);
  }
  std::printf("%.6f %.6f %ld\n", t, c, hwm_kb);
  return 0;
}

// apply_into of a delta onto a mapped base, into output buffers kept across
// applies (a serving process's standby weights), beside memcpy of the base's
// tensors into the same buffers: best of `reps` each, wall and CPU seconds.
struct MemoryApply {
  double apply_s = 1e9, apply_cpu = 1e9, copy_s = 1e9;
};
MemoryApply apply_in_memory(const std::string& base_path, const std::string& delta_path,
                            const std::string& next_path, int reps) {
  auto base = delta::SafetensorsFile::open(base_path);
  const std::vector<std::byte> diff = slurp(delta_path);
  std::vector<delta::Tensor> bufs;
  for (const auto& t : delta::inspect(diff).tensors)
    if (t.change != delta::TensorChange::Removed)
      bufs.push_back({t.name, t.dtype, t.shape, std::vector<std::byte>(t.bytes)});
  std::vector<delta::OutputTensor> out;
  for (auto& t : bufs) out.push_back({t.name, t.dtype, t.shape, t.data});
  MemoryApply r;
  for (int i = 0; i < reps; ++i) {
    double t0 = now(), c0 = cpu_seconds();
    delta::apply_into(base.tensors(), diff, out);
    r.apply_s = std::min(r.apply_s, now() - t0);
    r.apply_cpu = std::min(r.apply_cpu, cpu_seconds() - c0);
  }
  auto next = delta::SafetensorsFile::open(next_path);
  for (const auto& t : bufs) {
    auto want = next.at(t.name).data;
    if (!std::equal(want.begin(), want.end(), t.data.begin()))
      throw std::runtime_error("apply_into output differs from the new checkpoint: " + t.name);
  }
  for (int i = 0; i < reps; ++i) {
    double t0 = now();
    flare::parallel_for(bufs.size(), 0, [&](size_t k) {
      auto src = base.at(bufs[k].name).data;
      if (src.size() == bufs[k].data.size())
        std::memcpy(bufs[k].data.data(), src.data(), src.size());
    });
    r.copy_s = std::min(r.copy_s, now() - t0);
  }
  return r;
}

struct Scenario {
  const char* label;
  bool bf16;
  double lr;
  int adam_steps = 0;  // 0: base is the master, next one Adam-like step of it
};

template <typename T>
std::vector<delta::TensorView> views_of(const std::vector<T>& flat,
                                        const std::vector<bench::Layer>& layout,
                                        delta::DType dtype) {
  std::vector<delta::TensorView> v;
  uint64_t at = 0;
  for (const auto& l : layout) {
    uint64_t n = delta::element_count(l.shape);
    v.push_back({l.name, dtype, l.shape, std::as_bytes(std::span(flat.data() + at, n))});
    at += n;
  }
  return v;
}

void run_scenario(const Scenario& s, const std::vector<float>& master,
                  const std::vector<bench::Layer>& layout, const std::string& dir) {
  std::vector<float> stepped = master, before;
  if (s.adam_steps > 0)
    bench::adam_steps(stepped, before, s.lr, s.adam_steps, 7);
  else
    bench::adam_like_step(stepped, s.lr, 7);
  const std::vector<float>& from = s.adam_steps > 0 ? before : master;
  const std::string base = dir + "/flare-bench-base.safetensors",
                    next = dir + "/flare-bench-next.safetensors", diff = dir + "/flare-bench.delta",
                    out = dir + "/flare-bench-out.safetensors", patch = dir + "/flare-bench.zst";
  if (s.bf16) {
    std::vector<uint16_t> a, b;
    bench::to_bf16(from, a);
    bench::to_bf16(stepped, b);
    delta::write_safetensors(base, views_of(a, layout, delta::DType::BF16));
    delta::write_safetensors(next, views_of(b, layout, delta::DType::BF16));
  } else {
    delta::write_safetensors(base, views_of(from, layout, delta::DType::F32));
    delta::write_safetensors(next, views_of(stepped, layout, delta::DType::F32));
  }
  stepped = {};
  before = {};
  const double next_bytes = static_cast<double>(fs::file_size(next));

  // Best of three encodes and of three applies to a file, each in a fresh
  // process (peak RSS: the largest of the three applies).
  const ChildRun enc = best_of_3_in_child("--encode-child", base, next, diff);
  const delta::DeltaInfo info = delta::inspect_file(diff);
  const ChildRun ap = best_of_3_in_child("--apply-child", base, diff, out, [&](int r) {
    if (r == 0 && slurp(out) != slurp(next))
      throw std::runtime_error("apply output differs from the new checkpoint");
    fs::remove(out);
  });
  MemoryApply mem = apply_in_memory(base, diff, next, 10);
  uint64_t changed = 0, elements = 0;
  for (const auto& t : info.tensors) {
    changed += t.changed_elements;
    elements += t.elements;
  }

  std::vector<std::byte> nb = slurp(next);
  // Baseline for apply: writing a new file of the same size from memory the
  // way apply does (blocks allocated up front, 2 MB pieces from the pool's
  // threads), the least any apply that publishes a file has to do.
  double write_s = 1e9;
  for (int r = 0; r < 3; ++r) {
    double t1 = now();
    flare::AtomicFile f(out);
    f.reserve(nb.size());
    constexpr size_t kPiece = size_t{2} << 20;
    flare::parallel_for((nb.size() + kPiece - 1) / kPiece, 0, [&](size_t i) {
      f.write_at(i * kPiece,
                 std::span(nb).subspan(i * kPiece, std::min(kPiece, nb.size() - i * kPiece)));
    });
    f.commit();
    write_s = std::min(write_s, now() - t1);
    fs::remove(out);
  }
  double z_s = 0;
  size_t z = zstd3(nb, &z_s);
  {
    std::vector<std::byte> bb = slurp(base);
    for (size_t i = 0; i < nb.size(); ++i) nb[i] ^= bb[i];  // same layout: headers cancel
  }
  size_t xz = zstd3(nb);
  nb = {};
  size_t pf = zstd_patch_from(base, next, patch);
  const double fsize = static_cast<double>(fs::file_size(diff));
  std::printf(
      "| %s | %.2f%% | **%.1f×** | %.2f (%.2f) | %.2f (%.2f) | %.2f | %.0f MB | %.2f (%.2f) | "
      "%.2f | %.2f× | %.2f× | %.1f× | %.2f |\n",
      s.label, 100.0 * changed / elements, next_bytes / fsize, next_bytes / enc.seconds / 1e9,
      next_bytes / enc.cpu / 1e9, next_bytes / ap.seconds / 1e9, next_bytes / ap.cpu / 1e9,
      next_bytes / write_s / 1e9, ap.max_rss_kb / 1024.0, next_bytes / mem.apply_s / 1e9,
      next_bytes / mem.apply_cpu / 1e9, next_bytes / mem.copy_s / 1e9, next_bytes / z,
      next_bytes / pf, next_bytes / xz, next_bytes / z_s / 1e9);
  std::fflush(stdout);
  if (!keep_files)
    for (const auto& p : {base, next, diff, out}) fs::remove(p);
}

void adler_table() {
  std::vector<std::byte> buf(size_t{1} << 30);
  std::mt19937_64 rng(1);
  for (size_t i = 0; i < buf.size(); i += 8) {
    uint64_t v = rng();
    std::memcpy(&buf[i], &v, 8);
  }
  auto best = [&](auto fn) {
    double t = 1e9;
    for (int r = 0; r < 3; ++r) {
      double t0 = now();
      fn();
      t = std::min(t, now() - t0);
    }
    return buf.size() / t / 1e9;
  };
  uint32_t a = 0, b = 0, c = 0;
  double par = best([&] { a = delta::adler32_parallel(buf); });
  double one = best([&] { b = delta::adler32(buf); });
  double zl = best([&] {
    uLong s = ::adler32(0, nullptr, 0);
    for (size_t i = 0; i < buf.size(); i += 1 << 30)
      s = ::adler32(s, reinterpret_cast<const Bytef*>(&buf[i]), 1u << 30);
    c = static_cast<uint32_t>(s);
  });
  // Baseline: reading the buffer on the same threads (an XOR of its words), the
  // memory bandwidth any checksum of a buffer this size is bound by.
  uint64_t x = 0;
  double rd = best([&] {
    constexpr size_t kPiece = size_t{8} << 20;
    std::vector<uint64_t> part(buf.size() / kPiece);
    flare::parallel_for(part.size(), 0, [&](size_t i) {
      const uint64_t* p = reinterpret_cast<const uint64_t*>(buf.data() + i * kPiece);
      uint64_t acc[8] = {};
      for (size_t j = 0; j < kPiece / 8; j += 8)
        for (int q = 0; q < 8; ++q) acc[q] ^= p[j + q];
      for (int q = 0; q < 8; ++q) part[i] ^= acc[q];
    });
    for (uint64_t v : part) x ^= v;
  });
  if (a != b || b != c) throw std::runtime_error("Adler-32 results disagree");
  std::printf("\n| Adler-32 of 1 GiB | GB/s |\n|---|---|\n");
  std::printf("| flare (ISA-L, %u threads + combine) | **%.1f** |\n", flare::pool_size(), par);
  std::printf("| ISA-L isal_adler32, one core | %.1f |\n| zlib adler32, one core | %.1f |\n", one,
              zl);
  std::printf("| memory read of the buffer (XOR of its words), %u threads | %.1f |\n",
              flare::pool_size(), rd);
  if (x == 42) std::printf("\n");  // keeps the read from being optimised away
}

}  // namespace

int main(int argc, char** argv) {
  // One encode or apply alone, also for profiling; prints "seconds cpu-seconds peak-RSS-kB".
  if (argc == 5 && std::string(argv[1]) == "--apply-child")
    return child_main([&] { delta::apply_files(argv[2], argv[3], argv[4]); });
  if (argc == 5 && std::string(argv[1]) == "--encode-child")
    return child_main([&] { delta::encode_files(argv[2], argv[3], argv[4]); });
  if (argc == 6 && std::string(argv[1]) == "--apply-memory-repeat") {  // BASE DELTA NEXT
    MemoryApply m = apply_in_memory(argv[3], argv[4], argv[5], std::stoi(argv[2]));
    const double bytes = static_cast<double>(fs::file_size(argv[5]));
    std::printf(
        "apply_into best wall %.3f s (%.2f GB/s), best CPU %.3f s (%.2f GB per CPU-second); "
        "memcpy %.2f GB/s\n",
        m.apply_s, bytes / m.apply_s / 1e9, m.apply_cpu, bytes / m.apply_cpu / 1e9,
        bytes / m.copy_s / 1e9);
    return 0;
  }
  if (argc == 6 && std::string(argv[1]) == "--encode-repeat") {  // best of N encodes, one process
    double best_wall = 1e9, best_cpu = 1e9;
    for (int r = 0, reps = std::stoi(argv[2]); r < reps; ++r) {
      double t0 = now(), c0 = cpu_seconds();
      delta::encode_files(argv[3], argv[4], argv[5]);
      best_wall = std::min(best_wall, now() - t0);
      best_cpu = std::min(best_cpu, cpu_seconds() - c0);
    }
    const double bytes = static_cast<double>(fs::file_size(argv[4]));
    std::printf("best wall %.3f s (%.2f GB/s), best CPU %.3f s (%.2f GB per CPU-second)\n",
                best_wall, bytes / best_wall / 1e9, best_cpu, bytes / best_cpu / 1e9);
    return 0;
  }
  uint64_t params = uint64_t{1} << 28;
  std::string dir = "/tmp";
  int only = -1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--params" && i + 1 < argc)
      params = std::stoull(argv[++i]);
    else if (a == "--dir" && i + 1 < argc)
      dir = argv[++i];
    else if (a == "--quick")
      params = uint64_t{1} << 25;
    else if (a == "--keep")
      keep_files = true;
    else if (a == "--only" && i + 1 < argc)
      only = std::stoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: bench_delta [--params N] [--dir DIR] [--quick] [--only 0-5]\n");
      return 2;
    }
  }
  auto layout = bench::synthetic_layout(params);
  uint64_t total = 0;
  for (const auto& l : layout) total += delta::element_count(l.shape);
  std::vector<float> master(total);
  bench::gaussian_weights(master, 0.02f, 1);
  std::printf(
      "synthetic checkpoint: %llu parameters in %zu tensors, Gaussian sigma 0.02 (fp32 master)\n\n",
      static_cast<unsigned long long>(total), layout.size());
  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) < 1) load[0] = -1;
  std::printf("load average at start: %.2f; in parentheses: GB per CPU-second used\n\n", load[0]);
  std::printf(
      "| checkpoint pair | changed | flare ratio | flare encode GB/s | flare apply+verify GB/s "
      "(file) | new-file write GB/s | apply peak RSS | flare apply+verify GB/s (in memory) | "
      "memcpy GB/s | zstd -3 | zstd -3 --patch-from | dense XOR + zstd -3 | zstd -3 GB/s |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  const Scenario scenarios[] = {{"bf16, lr 3e-7", true, 3e-7},
                                {"bf16, lr 1e-6", true, 1e-6},
                                {"bf16, lr 1e-5", true, 1e-5},
                                {"bf16, lr 5e-5", true, 5e-5},
                                {"bf16, lr 1e-5, Adam step 10", true, 1e-5, 10},
                                {"fp32, lr 1e-6", false, 1e-6}};
  for (int i = 0; i < static_cast<int>(std::size(scenarios)); ++i)
    if (only < 0 || only == i) run_scenario(scenarios[i], master, layout, dir);
  master = {};
  adler_table();
  return 0;
}
