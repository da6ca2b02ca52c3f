// flare delta: encode, apply, inspect and verify flare-delta-v1 checkpoint deltas.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "delta/codec.hpp"
#include "runtime/file_io.hpp"
#include "subcommand.hpp"
#include "text/escape.hpp"
#include "text/utf8.hpp"

namespace {

using namespace flare::delta;
using flare::text::display_width;
using flare::text::printable;

constexpr const char* kUsage =
    "usage: flare delta encode BASE NEW OUT [--level N] [--threads N] [--chunk-elements N]\n"
    "                          [--base-identity NAME]\n"
    "       flare delta apply BASE DELTA OUT [--threads N] [--expect-base-identity NAME]\n"
    "       flare delta inspect DELTA [--json]\n"
    "       flare delta verify BASE DELTA NEW [--threads N]\n";

struct Args {
  std::vector<std::string> positional;
  std::vector<std::pair<std::string, std::string>> options;  // --name value
  bool json = false;
};

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

Args parse(int argc, char** argv, int first, const std::vector<std::string>& valued,
           bool allow_json) {
  Args a;
  for (int i = first; i < argc; ++i) {
    std::string s = argv[i];
    if (s == "--json" && allow_json) {
      a.json = true;
    } else if (s.rfind("--", 0) == 0) {
      std::string name = s.substr(2), value;
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        throw UsageError("option --" + name + " needs a value");
      }
      if (std::find(valued.begin(), valued.end(), name) == valued.end())
        throw UsageError("unknown option --" + name);
      a.options.emplace_back(name, value);
    } else {
      a.positional.push_back(s);
    }
  }
  return a;
}

uint64_t to_uint(const std::string& name, const std::string& v) {
  try {
    size_t used = 0;
    unsigned long long x = std::stoull(v, &used);
    if (used == v.size() && v[0] != '-') return x;
  } catch (const std::exception&) {
  }
  throw UsageError("--" + name + " needs a non-negative integer, got '" + v + "'");
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4) {
    b /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return buf;
}

std::string shape_text(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(s[i]);
  }
  return out + "]";
}

nlohmann::json to_json(const DeltaInfo& info) {
  nlohmann::json tensors = nlohmann::json::array();
  for (const auto& t : info.tensors) {
    nlohmann::json j = {{"name", t.name},
                        {"change", std::string(change_name(t.change))},
                        {"encoding", t.encoding},
                        {"dtype", std::string(dtype_name(t.dtype))},
                        {"shape", t.shape},
                        {"elements", t.elements},
                        {"bytes", t.bytes},
                        {"stored_bytes", t.stored_bytes},
                        {"changed", t.changed_elements},
                        {"density", t.density},
                        {"adler32", t.adler32},
                        {"base_adler32", t.base_adler32}};
    if (t.base_dtype) j["base_dtype"] = std::string(dtype_name(*t.base_dtype));
    if (t.base_shape) j["base_shape"] = *t.base_shape;
    nlohmann::json chunks = nlohmann::json::object();
    for (size_t e = 0; e < kChunkEncodings; ++e)
      chunks[std::string(encoding_name(static_cast<ChunkEncoding>(e)))] = t.chunks[e];
    j["chunks"] = chunks;
    tensors.push_back(std::move(j));
  }
  return {{"format", info.format},
          {"version", info.version},
          {"base_identity", info.base_identity},
          {"base_digest", info.base_digest},
          {"base_bytes", info.base_tensor_bytes},
          {"new_bytes", info.next_tensor_bytes},
          {"delta_bytes", info.delta_bytes},
          {"ratio", info.ratio()},
          {"metadata", info.metadata},
          {"tensors", tensors}};
}

void print_table(const DeltaInfo& info) {
  std::printf("%s, base '%s' (digest %08x), %zu metadata keys\n", info.format.c_str(),
              printable(info.base_identity).c_str(), info.base_digest, info.metadata.size());
  // Names and shapes padded by the columns they take, whatever their script.
  std::vector<std::string> names, shapes;
  size_t name_w = 6, shape_w = 5;
  for (const auto& t : info.tensors) {
    names.push_back(printable(t.name));
    shapes.push_back(shape_text(t.shape));
    name_w = std::max(name_w, display_width(names.back()));
    shape_w = std::max(shape_w, shapes.back().size());
  }
  auto padded = [](const std::string& s, size_t w) {
    return s + std::string(w - std::min(w, display_width(s)), ' ');
  };
  std::printf("%s  %-9s  %-8s  %-7s  %s  %12s  %8s  %10s\n", padded("tensor", name_w).c_str(),
              "change", "encoding", "dtype", padded("shape", shape_w).c_str(), "changed", "density",
              "stored");
  for (size_t i = 0; i < info.tensors.size(); ++i) {
    const auto& t = info.tensors[i];
    char density[16];
    std::snprintf(density, sizeof density, "%.3f%%", 100.0 * t.density);
    std::printf("%s  %-9s  %-8s  %-7s  %s  %12llu  %8s  %10s\n", padded(names[i], name_w).c_str(),
                std::string(change_name(t.change)).c_str(), t.encoding.c_str(),
                std::string(dtype_name(t.dtype)).c_str(), padded(shapes[i], shape_w).c_str(),
                static_cast<unsigned long long>(t.changed_elements), density,
                human_bytes(t.stored_bytes).c_str());
  }
  std::printf("total: %s of tensors in %s (%.1fx smaller)\n",
              human_bytes(info.next_tensor_bytes).c_str(), human_bytes(info.delta_bytes).c_str(),
              info.ratio());
}

int run(int argc, char** argv) {
  if (argc < 2) throw UsageError("missing action");
  // An interrupted encode or apply leaves no half-written *.tmp-PID-N file behind.
  flare::remove_temp_files_on_signal();
  std::string action = argv[1];
  if (action == "--help" || action == "-h" || action == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (action == "encode") {
    Args a = parse(argc, argv, 2, {"level", "threads", "chunk-elements", "base-identity"}, false);
    if (a.positional.size() != 3) throw UsageError("encode needs BASE NEW OUT");
    EncodeOptions o;
    for (auto& [k, v] : a.options) {
      if (k == "level") {
        // Past int's range the check must still see an out-of-range level, not a wrapped one.
        o.zstd_level = static_cast<int>(std::min<uint64_t>(to_uint(k, v), 1u << 30));
        flare::delta::check_zstd_level(o.zstd_level);  // before any file is read
      }
      if (k == "threads") o.threads = static_cast<unsigned>(to_uint(k, v));
      if (k == "chunk-elements") o.chunk_elements = to_uint(k, v);
      if (k == "base-identity") o.base_identity = v;
    }
    DeltaInfo info = encode_files(a.positional[0], a.positional[1], a.positional[2], o);
    std::printf("wrote %s: %s for %s of tensors (%.1fx smaller)\n", a.positional[2].c_str(),
                human_bytes(info.delta_bytes).c_str(), human_bytes(info.next_tensor_bytes).c_str(),
                info.ratio());
    return 0;
  }
  if (action == "apply" || action == "verify") {
    Args a = parse(argc, argv, 2, {"threads", "expect-base-identity"}, false);
    if (a.positional.size() != 3)
      throw UsageError(action + " needs BASE DELTA " + (action == "apply" ? "OUT" : "NEW"));
    ApplyOptions o;
    for (auto& [k, v] : a.options) {
      if (k == "threads") o.threads = static_cast<unsigned>(to_uint(k, v));
      if (k == "expect-base-identity") o.expect_base_identity = v;
    }
    if (action == "apply") {
      DeltaInfo info = apply_files(a.positional[0], a.positional[1], a.positional[2], o);
      std::printf("wrote %s: %zu tensors, %s, every checksum verified\n", a.positional[2].c_str(),
                  info.tensors.size(), human_bytes(info.next_tensor_bytes).c_str());
    } else {
      DeltaInfo info = verify_files(a.positional[0], a.positional[1], a.positional[2], o);
      std::printf("ok: %s applied to %s gives %s exactly (%zu tensors)\n", a.positional[1].c_str(),
                  a.positional[0].c_str(), a.positional[2].c_str(), info.tensors.size());
    }
    return 0;
  }
  if (action == "inspect") {
    Args a = parse(argc, argv, 2, {}, true);
    if (a.positional.size() != 1) throw UsageError("inspect needs DELTA");
    DeltaInfo info = inspect_file(a.positional[0]);
    if (a.json)
      std::printf("%s\n", to_json(info).dump(2).c_str());
    else
      print_table(info);
    return 0;
  }
  throw UsageError("unknown action '" + action + "'");
}

int delta_main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "flare delta: %s\n%s", printable(e.what()).c_str(), kUsage);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flare delta: %s\n", printable(e.what()).c_str());
    return 1;
  }
}

}  // namespace

FLARE_SUBCOMMAND(delta, "encode, apply, inspect and verify checkpoint deltas", delta_main);
