#pragma once
// Injected failures for testing clients. A spec is a ';'-separated list of
// rules, each `PREFIX:KIND[:key=value]...`, for example
//   /inference/v1/completions:429:rate=0.5:seed=7:retry_after=2
//   /hot_load/:delay:delay_ms=300;/v1/accounts:500:count=1
// KIND is one of 429, 500, 503, reset, delay, truncate, or several joined by
// '|' (a hit picks one of them uniformly, e.g. "/:429|503|reset:rate=0.2:seed=7"
// faults 20% of every route). Keys: rate (0..1,
// default 1), seed (default 0), count (most injections, default unlimited),
// retry_after (seconds, 429/503, default 1), delay_ms (delay, default 500).
// The first rule whose prefix matches the request path and whose draw hits
// decides; the admin routes are never faulted.
#include <array>
#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace flare::emulator {

enum class FaultKind { Status429, Status500, Status503, Reset, Delay, Truncate };

struct FaultRule {
  std::string prefix;
  std::vector<FaultKind> kinds{FaultKind::Status500};
  double rate = 1.0;
  uint64_t seed = 0;
  long count = -1;  // -1 = unlimited
  double retry_after_s = 1.0;
  long delay_ms = 500;
  long injected = 0;
  std::array<long, 6> injected_by_kind{};  // indexed by FaultKind
  std::mt19937_64 rng;
};

struct FaultHit {
  FaultKind kind;
  double retry_after_s;
  long delay_ms;
};

// Throws std::invalid_argument naming the rule and field on a bad spec.
std::vector<FaultRule> parse_fault_spec(const std::string& spec);
std::string fault_kind_name(FaultKind k);

class Faults {
 public:
  void set(const std::string& spec);  // replaces every rule; "" clears
  std::optional<FaultHit> draw(const std::string& path);
  nlohmann::json describe();

 private:
  std::mutex mu_;
  std::string spec_;
  std::vector<FaultRule> rules_;
};

}  // namespace flare::emulator
