#pragma once
// Structured errors raised by core code. The Lua boundary (bindings/) turns a
// flare::Error into a Lua error table {code=, message=, status=, retryable=,
// request_id=}; any other std::exception becomes a plain string error.
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace flare {

struct Error : std::runtime_error {
  std::string code;        // short machine-readable code, e.g. "timeout", "http_503"
  int status = 0;          // HTTP status when there was one
  bool retryable = false;  // whether repeating the same call may succeed
  std::string request_id;  // correlation id, when known
  // More string fields of the Lua error table (a sandbox refusal's capability and grant).
  std::vector<std::pair<std::string, std::string>> fields;

  Error(std::string code_, const std::string& message, int status_ = 0, bool retryable_ = false,
        std::string request_id_ = {})
      : std::runtime_error(message),
        code(std::move(code_)),
        status(status_),
        retryable(retryable_),
        request_id(std::move(request_id_)) {}
};

// Raised when the user interrupts (SIGINT/SIGTERM) a wait.
struct Interrupted : Error {
  Interrupted() : Error("interrupted", "interrupted") {}
};

}  // namespace flare
