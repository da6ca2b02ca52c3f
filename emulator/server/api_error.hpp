#pragma once
// Errors that route handlers throw and the server turns into JSON responses
// of the shape {"error": {"code", "message", "status", "type", "param"}}:
// Fireworks' fields and OpenAI's in one body.
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace flare::emulator {

struct ApiError : std::runtime_error {
  int status;
  std::string code;
  double retry_after_s = 0;  // > 0: sent as Retry-After

  ApiError(int status_, std::string code_, const std::string& message, double retry_after = 0)
      : std::runtime_error(message),
        status(status_),
        code(std::move(code_)),
        retry_after_s(retry_after) {}
};

[[noreturn]] void bad_request(const std::string& message);
[[noreturn]] void not_found(const std::string& message);

void send_json(httplib::Response& res, int status, const nlohmann::json& body);
void send_error(httplib::Response& res, int status, const std::string& code,
                const std::string& message, double retry_after_s = 0);

// The request body as a JSON object; 400 naming the problem otherwise. An
// empty body is an empty object.
nlohmann::json parse_body(const httplib::Request& req);

// Typed field access with 400 errors that name the field.
bool get_bool(const nlohmann::json& obj, const char* field, bool fallback);
// Integers: a 400 naming the field for a value out of range (never a wrap or
// an undefined cast). get_int32 is for fields the engine holds as int.
long get_int(const nlohmann::json& obj, const char* field, long fallback);
int get_int32(const nlohmann::json& obj, const char* field, int fallback);
double get_number(const nlohmann::json& obj, const char* field, double fallback);
std::string get_string(const nlohmann::json& obj, const char* field, const std::string& fallback);

}  // namespace flare::emulator
