#include "runtime/shared_library.hpp"

#include <dlfcn.h>

#include <filesystem>

#include "runtime/error.hpp"

namespace flare {

SharedLibrary::SharedLibrary(std::vector<std::string> candidates, std::string purpose)
    : candidates_(std::move(candidates)), purpose_(std::move(purpose)) {}

void SharedLibrary::open() {
  for (const auto& name : candidates_) {
    // Local: its symbols must not interpose on those of libraries loaded later.
    handle_ = ::dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle_) return;
    if (!open_error_.empty()) open_error_ += "; ";
    const char* why = ::dlerror();
    open_error_ += why ? why : name;
  }
}

void* SharedLibrary::symbol(const char* name) {
  std::call_once(opened_, [this] { open(); });
  if (!handle_)
    throw Error("library_missing",
                purpose_ + " needs a shared library that could not be loaded: " + open_error_);
  ::dlerror();
  void* address = ::dlsym(handle_, name);
  if (!address) {
    const char* why = ::dlerror();
    throw Error("library_missing",
                purpose_ + ": symbol " + name + " not found (" + (why ? why : "null") + ")");
  }
  return address;
}

std::string executable_dir() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return ".";
  return exe.parent_path().string();
}

}  // namespace flare
