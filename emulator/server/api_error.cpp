#include "emulator/server/api_error.hpp"

#include <cmath>

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

void send_error(httplib::Response& res, int status, const std::string& code,
                const std::string& message, double retry_after_s) {
  if (retry_after_s > 0) {
    res.set_header("Retry-After", std::to_string(static_cast<long>(std::ceil(retry_after_s))));
  }
  send_json(res, status, {{"error", {{"code", code}, {"message", message}, {"status", status}}}});
}

nlohmann::json parse_body(const httplib::Request& req) {
  if (req.body.empty()) return nlohmann::json::object();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(req.body);
  } catch (const nlohmann::json::parse_error& e) {
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
  if (it->is_number_integer()) return it->get<long>();
  if (it->is_number_float()) {
    double d = it->get<double>();
    if (d == std::floor(d)) return static_cast<long>(d);
  }
  // The REST gateway also accepts int64 values as strings.
  if (it->is_string()) {
    try {
      size_t used = 0;
      long v = std::stol(it->get<std::string>(), &used);
      if (used == it->get<std::string>().size()) return v;
    } catch (const std::exception&) {
    }
  }
  bad_request(std::string("field '") + field + "' must be an integer");
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

void check_resource_id(const char* field, const std::string& id) {
  if (id.empty() || id.size() > 63) bad_request(std::string(field) + " must be 1 to 63 characters");
  for (char c : id) {
    if (!(std::islower(static_cast<unsigned char>(c)) ||
          std::isdigit(static_cast<unsigned char>(c)) || c == '-')) {
      bad_request(std::string(field) + " '" + id +
                  "' may contain only lowercase letters, digits and '-'");
    }
  }
}

}  // namespace flare::emulator
