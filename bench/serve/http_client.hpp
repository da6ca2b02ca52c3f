#pragma once
// A minimal blocking HTTP client on one libcurl easy handle, so a client
// thread keeps its connection alive across requests.
#include <string>
#include <vector>

namespace flare::bench {

struct HttpResponse {
  long status = 0;  // 0 = transport error (see error)
  std::string body;
  std::string error;
};

class HttpClient {
 public:
  HttpClient();
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  HttpResponse request(const std::string& method, const std::string& url,
                       const std::vector<std::string>& headers, const std::string& body = "");

 private:
  void* curl_;
};

}  // namespace flare::bench
