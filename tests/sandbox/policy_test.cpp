// bindings/sandbox_policy: endpoints, resource ids and file paths sandboxed code may reach.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "runtime/error.hpp"
#include "sandbox_policy.hpp"

namespace fs = std::filesystem;
namespace sb = flare::sandbox;

namespace {

std::string denial(const std::string& method, const std::string& path,
                   const std::map<std::string, std::string>& headers = {}) {
  try {
    sb::check_request(method, path, headers);
  } catch (const flare::Error& e) {
    CHECK(e.code == "sandbox_denied");
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("origins: scheme, host and port, default ports filled in") {
  CHECK(sb::origin_of("https://api.fireworks.ai/v1/x") == "https://api.fireworks.ai:443");
  CHECK(sb::origin_of("http://127.0.0.1:8080") == "http://127.0.0.1:8080");
  CHECK(sb::origin_of("HTTP://User:pw@Example.com/a?b") == "http://example.com:80");
  CHECK(sb::origin_of("not a url") == "");
}

TEST_CASE("requests: deployment and trainer ids need a granted prefix") {
  sb::Policy p;
  p.prefixes = {"team-a-"};
  sb::Scope scope(&p);
  CHECK(sb::active());
  CHECK(denial("DELETE", "/v1/accounts/acc/deployments/team-a-x") == "");
  CHECK(denial("GET", "/v1/accounts/acc/deployments?pageSize=200") == "");
  CHECK(denial("POST", "/v1/accounts/acc/deployments?deploymentId=team-a-y") == "");
  CHECK(denial("GET", "/v1/accounts?pageSize=2") == "");
  std::string d = denial("delete", "/v1/accounts/acc/deployments/team-b-prod");
  CHECK(d.find("api.resources denied: DELETE deployment 'team-b-prod'") != std::string::npos);
  CHECK(d.find("--allow-prefix") != std::string::npos);
  CHECK(denial("POST", "/v1/accounts/acc/deployments?deploymentId=prod") != "");
  CHECK(denial("POST", "/v1/accounts/acc/rlorTrainerJobs?rlorTrainerJobId=other") != "");
  CHECK(denial("PATCH", "/v1/accounts/acc/deployments/other:scale") != "");
  CHECK(denial("POST", "/training/v1/rlorTrainerJobs/acc/other/forward_backward") != "");
  CHECK(denial("POST", "/training/v1/rlorTrainerJobs/acc/team-a-j/optim_step") == "");
  CHECK(denial("POST", "/hot_load/v1/models/hot_load",
               {{"fireworks-deployment", "accounts/acc/deployments/other"}}) != "");
  CHECK(denial("POST", "/v1/accounts/acc/deployments/team-a-x/../other") != "");
  CHECK(denial("DELETE", "/v1/accounts/acc/deployments/team-a-%2e%2e") != "");
  CHECK(denial("POST", "/admin/v1/faults") != "");
  CHECK(denial("POST", "/v1/accounts/acc/datasets") != "");
}

TEST_CASE("requests: outside a sandbox nothing is checked") {
  CHECK_FALSE(sb::active());
  CHECK(denial("DELETE", "/v1/accounts/acc/deployments/anything") == "");
}

TEST_CASE("files: resolved paths, symlinks and .. included, under the roots") {
  std::string tmpl = (fs::temp_directory_path() / "flare-policy-XXXXXX").string();
  fs::path dir = mkdtemp(tmpl.data());
  fs::create_directories(dir / "box");
  fs::create_directories(dir / "out");
  std::ofstream(dir / "out" / "secret") << "s";
  fs::create_symlink(dir / "out" / "secret", dir / "box" / "link");
  std::vector<std::string> roots = {fs::canonical(dir / "box").string()};
  CHECK(sb::resolve_within((dir / "box" / "new.txt").string(), true, roots) ==
        roots[0] + "/new.txt");
  CHECK_THROWS_WITH_AS(sb::resolve_within((dir / "box" / "link").string(), false, roots),
                       doctest::Contains("files.read denied"), flare::Error);
  CHECK_THROWS_AS(
      sb::resolve_within((dir / "box" / ".." / "out" / "secret").string(), false, roots),
      flare::Error);
  CHECK_THROWS_WITH_AS(sb::resolve_within((dir / "out" / "x").string(), true, roots),
                       doctest::Contains("--allow-write DIR"), flare::Error);
  fs::remove_all(dir);
}
