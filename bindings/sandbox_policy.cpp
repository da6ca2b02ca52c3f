#include "sandbox_policy.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "runtime/error.hpp"

namespace flare::sandbox {
namespace {

Policy g_process;
bool g_process_active = false;
const Policy* g_scope = nullptr;  // the Lua thread's; a process policy wins
std::mutex g_origins_mu;          // allow_origin may come from the emulator's thread
std::map<std::string, std::string> g_emulator_keys;  // origin -> key

const Policy* current() {
  return g_process_active ? &g_process : g_scope;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string grant_prefix_hint(const Policy& p) {
  if (p.prefixes.empty()) return "no prefix is granted";
  std::string s = "granted: ";
  for (size_t i = 0; i < p.prefixes.size(); i++) s += (i ? ", '" : "'") + p.prefixes[i] + "'";
  return s;
}

void check_id(const Policy& p, const std::string& kind, const std::string& id,
              const std::string& method) {
  for (const auto& pre : p.prefixes)
    if (id.compare(0, pre.size(), pre) == 0) return;
  deny("api.resources",
       method + " " + kind + " '" + id + "': the rule --allow-prefix limits deployment and " +
           "trainer operations to ids starting with a granted prefix (" + grant_prefix_hint(p) +
           ")",
       "--allow-prefix " + (id.empty() ? std::string("PREFIX") : id.substr(0, id.find('-') + 1)));
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  size_t i = 1;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    parts.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  return parts;
}

std::string query_value(const std::string& query, const std::string& key) {
  size_t i = 0;
  while (i < query.size()) {
    size_t j = query.find('&', i);
    if (j == std::string::npos) j = query.size();
    std::string item = query.substr(i, j - i);
    if (item.compare(0, key.size() + 1, key + "=") == 0) return item.substr(key.size() + 1);
    i = j + 1;
  }
  return "";
}

std::vector<const void*> g_sealed;
bool g_sandbox_created = false;

}  // namespace

void seal(const void* connection) {
  g_sealed.push_back(connection);
}
bool key_readable(const void* connection) {
  return !active() && std::find(g_sealed.begin(), g_sealed.end(), connection) == g_sealed.end();
}
bool emulator_key_readable() {
  return !active() && !g_sandbox_created;
}
void note_sandbox_created() {
  g_sandbox_created = true;
}

bool active() {
  return current() != nullptr;
}

void activate_process(Policy p) {
  std::lock_guard<std::mutex> lock(g_origins_mu);
  g_process = std::move(p);
  g_process_active = true;
  g_sandbox_created = true;
}

std::vector<std::string> configured_origins() {
  std::vector<std::string> out;
  std::string base = env("FIREWORKS_BASE_URL");
  if (base.empty() && !env("FIREWORKS_API_KEY").empty()) base = "https://api.fireworks.ai";
  for (const std::string& u : {base, env("FIREWORKS_INFERENCE_URL"), env("FIREWORKS_HOTLOAD_URL"),
                               env("FLARE_EMULATOR_URL")}) {
    std::string o = origin_of(u);
    if (!o.empty() && std::find(out.begin(), out.end(), o) == out.end()) out.push_back(o);
  }
  return out;
}

void allow_origin(const std::string& url, const std::string& key) {
  std::lock_guard<std::mutex> lock(g_origins_mu);
  std::string o = origin_of(url);
  if (o.empty()) return;
  g_process.origins.push_back(o);
  g_emulator_keys[o] = key;
}

std::string key_for(const std::string& url) {
  std::lock_guard<std::mutex> lock(g_origins_mu);
  auto it = g_emulator_keys.find(origin_of(url));
  return it == g_emulator_keys.end() ? "" : it->second;
}

Scope::Scope(const Policy* policy) : previous_(g_scope) {
  g_scope = policy;
}
Scope::~Scope() {
  g_scope = previous_;
}

void deny(const std::string& capability, const std::string& what, const std::string& grant) {
  flare::Error e("sandbox_denied",
                 "sandbox: " + capability + " denied: " + what + " (grant: " + grant + ")");
  e.fields = {{"capability", capability}, {"grant", grant}};
  throw e;
}

std::string origin_of(const std::string& url) {
  size_t colon = url.find("://");
  if (colon == std::string::npos) return "";
  std::string scheme = lower(url.substr(0, colon));
  size_t start = colon + 3;
  size_t end = url.find_first_of("/?#", start);
  std::string authority = lower(url.substr(start, end == std::string::npos ? end : end - start));
  if (size_t at = authority.rfind('@'); at != std::string::npos) authority.erase(0, at + 1);
  bool has_port =
      authority.find(':', authority.rfind(']') == std::string::npos ? 0 : authority.rfind(']')) !=
      std::string::npos;
  if (!has_port) authority += scheme == "https" ? ":443" : ":80";
  return scheme + "://" + authority;
}

void check_url(const std::string& url, const char* who) {
  const Policy* p = current();
  if (!p) return;
  std::string o = origin_of(url);
  std::vector<std::string> allowed;
  {
    std::lock_guard<std::mutex> lock(g_origins_mu);
    allowed = g_process_active ? g_process.origins : p->origins;
    if (!g_process_active) {
      for (const auto& x : g_process.origins) allowed.push_back(x);  // the in-process emulator
    }
  }
  if (!o.empty() && std::find(allowed.begin(), allowed.end(), o) != allowed.end()) return;
  deny("network",
       std::string(who) + ": " + (o.empty() ? url : o) + " is not a configured Fireworks endpoint",
       "set FIREWORKS_BASE_URL (or FIREWORKS_INFERENCE_URL / FIREWORKS_HOTLOAD_URL) to it");
}

void check_request(const std::string& method_in, const std::string& full_path,
                   const std::map<std::string, std::string>& headers) {
  const Policy* p = current();
  if (!p) return;
  std::string method = method_in;
  for (char& c : method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  size_t q = full_path.find('?');
  std::string path = full_path.substr(0, q);
  std::string query = q == std::string::npos ? "" : full_path.substr(q + 1);
  auto parts = split_path(path);
  for (const auto& s : parts) {
    if (s == ".." || s == "." || s.find('%') != std::string::npos)
      deny("api", method + " " + path + ": dot segments and escapes in an API path", "none");
  }
  for (const auto& [name, value] : headers) {
    if (lower(name) == "fireworks-deployment") {
      size_t at = value.find("/deployments/");
      check_id(*p, "deployment", at == std::string::npos ? value : value.substr(at + 13), method);
    }
  }
  auto is = [&](size_t i, const char* s) { return parts.size() > i && parts[i] == s; };
  // /v1/accounts/{a}/deployments[/{id}...] and /v1/accounts/{a}/rlorTrainerJobs[/{id}...]
  if (is(0, "v1") && is(1, "accounts") && parts.size() >= 4) {
    const std::string& coll = parts[3];
    const char* kind = coll == "deployments"       ? "deployment"
                       : coll == "rlorTrainerJobs" ? "trainer job"
                                                   : nullptr;
    if (kind) {
      if (parts.size() >= 5 && !parts[4].empty()) {
        std::string id = parts[4].substr(0, parts[4].find(':'));
        return check_id(*p, kind, id, method);
      }
      if (method == "GET") return;  // listing
      std::string id =
          query_value(query, coll == "deployments" ? "deploymentId" : "rlorTrainerJobId");
      return check_id(*p, kind, id, method);
    }
    if (method == "GET") return;
    deny("api",
         method + " " + path + ": only deployment and trainer operations are open to " +
             "sandboxed code",
         "run the script without --sandbox");
  }
  if (is(0, "training") && is(1, "v1") && is(2, "rlorTrainerJobs") && parts.size() >= 5)
    return check_id(*p, "trainer job", parts[4], method);
  if (is(0, "inference") || is(0, "hot_load"))
    return;  // their deployment travels in a header or model
  if (method == "GET" && parts.size() == 2 && is(0, "v1") && is(1, "accounts")) return;
  deny("api", method + " " + path + ": not an operation open to sandboxed code",
       "run the script without --sandbox");
}

void check_model(const std::string& model, const char* who) {
  const Policy* p = current();
  if (!p) return;
  size_t at = model.find("/deployments/");
  if (at == std::string::npos) return;  // a base model served by a shared deployment
  std::string id = model.substr(at + 13);
  id = id.substr(0, id.find_first_of("/#:"));
  check_id(*p, "deployment", id, std::string(who) + " of");
}

namespace {

bool within(const std::string& path, const std::string& root) {
  if (root == "/") return true;
  return path == root || (path.size() > root.size() && path.compare(0, root.size(), root) == 0 &&
                          path[root.size()] == '/');
}

std::string resolve(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path p = path.empty() ? fs::path(".") : fs::path(path);
  if (p.is_relative()) p = fs::current_path(ec) / p;
  std::string real = fs::weakly_canonical(p, ec).string();
  return ec ? p.lexically_normal().string() : real;
}

bool allowed(const std::string& real, const std::vector<std::string>& roots) {
  for (const auto& r : roots)
    if (within(real, r)) return true;
  return false;
}

}  // namespace

std::string resolve_within(const std::string& path, bool write,
                           const std::vector<std::string>& roots) {
  std::string real = resolve(path);
  if (allowed(real, roots)) return real;
  deny(write ? "files.write" : "files.read",
       (write ? "writing " : "reading ") + path +
           (real != path ? " (" + real + ")" : std::string()) +
           (write ? ": writes are limited to the run directory"
                  : ": reads are limited to the script's folder and the run directory"),
       write ? "--allow-write DIR" : "--allow-read DIR");
}

void check_file(const std::string& path, bool write) {
  const Policy* p = current();
  if (p) resolve_within(path, write, write ? p->write_roots : p->read_roots);
}

bool file_allowed(const std::string& path, bool write) {
  const Policy* p = current();
  return !p || allowed(resolve(path), write ? p->write_roots : p->read_roots);
}

}  // namespace flare::sandbox
