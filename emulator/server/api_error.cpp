#include "emulator/server/api_error.hpp"

#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>

namespace flare::emulator {

void bad_request(const std::string& message) {
  throw ApiError(400, "INVALID_ARGUMENT", message);
}
void not_found(const std::string& message) {
  throw ApiError(404, "NOT_FOUND", message);
}

void send_json(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  // Byte-level tokens may split UTF-8 sequences: invalid bytes become U+FFFD.
  res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                  "application/json");
}

namespace {

// OpenAI's error type for an HTTP status.
const char* error_type(int status) {
  if (status == 401) return "authentication_error";
  if (status == 403) return "permission_error";
  if (status == 429) return "rate_limit_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

// The request field a message names: "field 'x' ..." or "x: ..." (the
// engine's and the chat template's form); null when it names none.
nlohmann::json error_param(const std::string& message) {
  if (message.starts_with("field '")) {
    auto end = message.find('\'', 7);
    if (end != std::string::npos) return message.substr(7, end - 7);
  }
  // Field names are lower case; "DEPLOYMENT_SCALING_UP: ..." names a state.
  auto colon = message.find(": ");
  if (colon == std::string::npos || !std::islower(static_cast<unsigned char>(message[0]))) {
    return nullptr;
  }
  for (size_t i = 0; i < colon; ++i) {
    char c = message[i];
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '[' &&
        c != ']') {
      return nullptr;
    }
  }
  return message.substr(0, colon);
}

}  // namespace

void send_error(httplib::Response& res, int status, const std::string& code,
                const std::string& message, double retry_after_s) {
  if (retry_after_s > 0) {
    res.set_header("Retry-After", std::to_string(static_cast<long>(std::ceil(retry_after_s))));
  }
  // Fireworks' fields (code, message, status) and OpenAI's (message, type,
  // param, code) in one body, so either kind of client reads it.
  send_json(res, status,
            {{"error",
              {{"code", code},
               {"message", message},
               {"status", status},
               {"type", error_type(status)},
               {"param", error_param(message)}}}});
}

nlohmann::json parse_body(const httplib::Request& req) {
  if (req.body.empty()) return nlohmann::json::object();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(req.body);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for 1e400
    bad_request(std::string("request body is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) bad_request("request body must be a JSON object");
  return j;
}

bool get_bool(const nlohmann::json& obj, const char* field, bool fallback) {
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) bad_request(std::string("field '") + field + "' must be a boolean");
  return it->get<bool>();
}

long get_int(const nlohmann::json& obj, const char* field, long fallback) {
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) return fallback;
  auto out_of_range = [&](const std::string& text) {
    bad_request(std::string("field '") + field + "' is " + text +
                ", outside the 64-bit integer range");
  };
  if (it->is_number_unsigned()) {
    uint64_t u = it->get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<long>::max())) out_of_range(it->dump());
    return static_cast<long>(u);
  }
  if (it->is_number_integer()) return it->get<long>();
  if (it->is_number_float()) {
    double d = it->get<double>();
    if (d == std::floor(d)) {
      // 2^63 is the first double past the range; casting it or more is undefined.
      if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) out_of_range(it->dump());
      return static_cast<long>(d);
    }
  }
  // The REST gateway also accepts int64 values as strings.
  if (it->is_string()) {
    const std::string& text = it->get_ref<const std::string&>();
    long v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec == std::errc::result_out_of_range) out_of_range("'" + text + "'");
    if (ec == std::errc() && end == text.data() + text.size() && !text.empty()) return v;
  }
  bad_request(std::string("field '") + field + "' must be an integer");
}

int get_int32(const nlohmann::json& obj, const char* field, int fallback) {
  long v = get_int(obj, field, fallback);
  if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max()) {
    bad_request(std::string("field '") + field + "' must be an integer in [" +
                std::to_string(std::numeric_limits<int>::min()) + ", " +
                std::to_string(std::numeric_limits<int>::max()) + "], got " + std::to_string(v));
  }
  return static_cast<int>(v);
}

double get_number(const nlohmann::json& obj, const char* field, double fallback) {
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_number()) bad_request(std::string("field '") + field + "' must be a number");
  return it->get<double>();
}

std::string get_string(const nlohmann::json& obj, const char* field, const std::string& fallback) {
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) return fallback;
  if (!it->is_string()) bad_request(std::string("field '") + field + "' must be a string");
  return it->get<std::string>();
}

}  // namespace flare::emulator
