#pragma once
// What sandboxed code may do beyond the Lua language: the checks the bindings make on its
// behalf (API key reads, URLs, resource ids). No Lua header: fireworks.cpp, http.cpp and
// emulator.cpp ask these questions, sandbox*.cpp set the policy.
//
// A policy is in force process-wide after `flare run --sandbox` arms it (irreversible), or
// while a function of a module loaded with flare.sandbox.require runs (a Scope).
#include <map>
#include <string>
#include <vector>

namespace flare::sandbox {

struct Policy {
  std::vector<std::string> prefixes;     // --allow-prefix: deployment and trainer ids
  std::vector<std::string> origins;      // scheme://host:port of the configured endpoints
  std::vector<std::string> read_roots;   // canonical folders flare.fs may read under
  std::vector<std::string> write_roots;  // and write under
};

// Whether sandboxed code is running (or the whole process is sandboxed).
bool active();
// Arms the policy for the rest of the process.
void activate_process(Policy p);
// The endpoints named by the environment (FIREWORKS_BASE_URL, FIREWORKS_INFERENCE_URL,
// FIREWORKS_HOTLOAD_URL, the cloud's default URL when a key is set, FLARE_EMULATOR_URL).
std::vector<std::string> configured_origins();
// The in-process emulator's URL becomes a configured endpoint when it starts; its key stays
// in C++: a connection to that URL made without a key gets it (key_for).
void allow_origin(const std::string& url, const std::string& key);
std::string key_for(const std::string& url);

// Whether Lua may read API keys from connection and emulator objects: never while sandboxed code
// runs, never for a connection made by sandboxed code, never for the in-process emulator's once a
// sandbox was created (connections to it get its key in C++, key_for).
void seal(const void* connection);
bool key_readable(const void* connection);
bool emulator_key_readable();
void note_sandbox_created();

// While a Scope lives (on the Lua thread), `policy` is in force.
class Scope {
 public:
  explicit Scope(const Policy* policy);
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  const Policy* previous_;
};

// Each throws flare::Error{code = "sandbox_denied"} naming the capability and its grant.
[[noreturn]] void deny(const std::string& capability, const std::string& what,
                       const std::string& grant);
void check_url(const std::string& url, const char* who);
void check_request(const std::string& method, const std::string& path,
                   const std::map<std::string, std::string>& headers);
void check_model(const std::string& model, const char* who);

// Files: `path` resolved (absolute, symlinks and .. of the part that exists resolved) when it is
// under one of the roots; else sandbox_denied naming files.read or files.write.
std::string resolve_within(const std::string& path, bool write,
                           const std::vector<std::string>& roots);
// The same against the policy in force (flare.fs and the helpers built on it); a no-op outside
// the sandbox. file_allowed answers without raising.
void check_file(const std::string& path, bool write);
bool file_allowed(const std::string& path, bool write);

// "scheme://host:port" of a URL (default ports filled in, lower case), "" when not a URL.
std::string origin_of(const std::string& url);

}  // namespace flare::sandbox
