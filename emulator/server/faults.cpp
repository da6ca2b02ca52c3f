#include "emulator/server/faults.hpp"

#include <stdexcept>

namespace flare::emulator {
namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t pos = s.find(sep, start);
    out.push_back(s.substr(start, pos == std::string::npos ? std::string::npos : pos - start));
    if (pos == std::string::npos) break;
    start = pos + 1;
  }
  return out;
}

double parse_double(const std::string& v, const std::string& what) {
  try {
    size_t used = 0;
    double d = std::stod(v, &used);
    if (used == v.size()) return d;
  } catch (const std::exception&) {
  }
  throw std::invalid_argument(what + " must be a number, got '" + v + "'");
}

long parse_long(const std::string& v, const std::string& what) {
  try {
    size_t used = 0;
    long d = std::stol(v, &used);
    if (used == v.size()) return d;
  } catch (const std::exception&) {
  }
  throw std::invalid_argument(what + " must be an integer, got '" + v + "'");
}

FaultKind parse_kind(const std::string& k, const std::string& where) {
  if (k == "429") return FaultKind::Status429;
  if (k == "500") return FaultKind::Status500;
  if (k == "503") return FaultKind::Status503;
  if (k == "reset") return FaultKind::Reset;
  if (k == "delay") return FaultKind::Delay;
  if (k == "truncate") return FaultKind::Truncate;
  throw std::invalid_argument(where + ": unknown fault kind '" + k +
                              "' (expected 429, 500, 503, reset, delay or truncate)");
}

}  // namespace

std::string fault_kind_name(FaultKind k) {
  switch (k) {
    case FaultKind::Status429:
      return "429";
    case FaultKind::Status500:
      return "500";
    case FaultKind::Status503:
      return "503";
    case FaultKind::Reset:
      return "reset";
    case FaultKind::Delay:
      return "delay";
    case FaultKind::Truncate:
      return "truncate";
  }
  return "?";
}

std::vector<FaultRule> parse_fault_spec(const std::string& spec) {
  std::vector<FaultRule> rules;
  if (spec.empty()) return rules;
  int index = 0;
  for (const auto& text : split(spec, ';')) {
    ++index;
    if (text.empty()) continue;
    std::string where = "fault rule " + std::to_string(index) + " ('" + text + "')";
    auto parts = split(text, ':');
    if (parts.size() < 2) throw std::invalid_argument(where + ": expected PREFIX:KIND[:key=value]");
    FaultRule r;
    r.prefix = parts[0];
    if (r.prefix.empty() || r.prefix[0] != '/') {
      throw std::invalid_argument(where + ": the route prefix must start with '/'");
    }
    r.kinds.clear();
    for (const auto& k : split(parts[1], '|')) r.kinds.push_back(parse_kind(k, where));
    for (size_t i = 2; i < parts.size(); ++i) {
      auto eq = parts[i].find('=');
      if (eq == std::string::npos) {
        throw std::invalid_argument(where + ": expected key=value, got '" + parts[i] + "'");
      }
      std::string key = parts[i].substr(0, eq), value = parts[i].substr(eq + 1);
      std::string field = where + ": " + key;
      if (key == "rate") {
        r.rate = parse_double(value, field);
        if (r.rate < 0 || r.rate > 1) throw std::invalid_argument(field + " must be in [0, 1]");
      } else if (key == "seed") {
        r.seed = static_cast<uint64_t>(parse_long(value, field));
      } else if (key == "count") {
        r.count = parse_long(value, field);
      } else if (key == "retry_after") {
        r.retry_after_s = parse_double(value, field);
      } else if (key == "delay_ms") {
        r.delay_ms = parse_long(value, field);
        if (r.delay_ms < 0) throw std::invalid_argument(field + " must be >= 0");
      } else {
        throw std::invalid_argument(where + ": unknown key '" + key +
                                    "' (expected rate, seed, count, retry_after or delay_ms)");
      }
    }
    r.rng.seed(r.seed);
    rules.push_back(std::move(r));
  }
  return rules;
}

void Faults::set(const std::string& spec) {
  auto rules = parse_fault_spec(spec);
  std::lock_guard lock(mu_);
  rules_ = std::move(rules);
  spec_ = spec;
}

std::optional<FaultHit> Faults::draw(const std::string& path) {
  std::lock_guard lock(mu_);
  for (auto& r : rules_) {
    if (path.compare(0, r.prefix.size(), r.prefix) != 0) continue;
    if (r.count >= 0 && r.injected >= r.count) continue;
    double u = std::uniform_real_distribution<double>(0.0, 1.0)(r.rng);
    if (u >= r.rate) continue;
    ++r.injected;
    FaultKind kind = r.kinds[0];
    if (r.kinds.size() > 1)
      kind = r.kinds[std::uniform_int_distribution<size_t>(0, r.kinds.size() - 1)(r.rng)];
    ++r.injected_by_kind[static_cast<size_t>(kind)];
    return FaultHit{kind, r.retry_after_s, r.delay_ms};
  }
  return std::nullopt;
}

nlohmann::json Faults::describe() {
  std::lock_guard lock(mu_);
  nlohmann::json rules = nlohmann::json::array();
  for (const auto& r : rules_) {
    std::string kinds;
    nlohmann::json by_kind = nlohmann::json::object();
    for (auto k : r.kinds) {
      if (!kinds.empty()) kinds += '|';
      kinds += fault_kind_name(k);
      by_kind[fault_kind_name(k)] = r.injected_by_kind[static_cast<size_t>(k)];
    }
    rules.push_back({{"prefix", r.prefix},
                     {"kind", kinds},
                     {"rate", r.rate},
                     {"seed", r.seed},
                     {"count", r.count},
                     {"retry_after", r.retry_after_s},
                     {"delay_ms", r.delay_ms},
                     {"injected", r.injected},
                     {"injected_by_kind", by_kind}});
  }
  return {{"spec", spec_}, {"rules", rules}};
}

}  // namespace flare::emulator
