#pragma once
// A shared library opened with dlopen on first use. flare links at start-up
// only what every script needs; libcurl (with its TLS, Kerberos and LDAP
// tree), libedit and the emulator cost milliseconds to load and initialise,
// so they are opened when a script first uses them.
#include <mutex>
#include <string>
#include <vector>

namespace flare {

class SharedLibrary {
 public:
  // `candidates`: file names or paths tried in order (e.g. "libcurl.so.4").
  // `purpose` names what needs it, for the error message.
  SharedLibrary(std::vector<std::string> candidates, std::string purpose);
  SharedLibrary(const SharedLibrary&) = delete;
  SharedLibrary& operator=(const SharedLibrary&) = delete;

  // Opens the library if needed (thread-safe) and returns the address of
  // `name`; throws flare::Error "library_missing" naming the library and symbol.
  void* symbol(const char* name);

  template <class F>
  F* function(const char* name) {
    return reinterpret_cast<F*>(symbol(name));
  }

 private:
  void open();

  std::vector<std::string> candidates_;
  std::string purpose_;
  std::once_flag opened_;
  void* handle_ = nullptr;
  std::string open_error_;
};

// The directory holding the running executable (from /proc/self/exe), so
// flare's own modules are found next to it or under ../lib/flare.
std::string executable_dir();

}  // namespace flare
