#pragma once
// A minimal blocking HTTP client on libcurl for the emulator tests.
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace flare::test {

struct Reply {
  int curl_code = 0;  // CURLE_OK = 0
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  nlohmann::json json() const { return nlohmann::json::parse(body); }
  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? "" : it->second;
  }
};

Reply http(const std::string& method, const std::string& url, const std::string& body = "",
           const std::vector<std::string>& headers = {}, long timeout_ms = 60000);

}  // namespace flare::test
