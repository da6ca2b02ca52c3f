#include "fireworks/resource_registry.hpp"

#include <chrono>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>

#include "fireworks/redact.hpp"
#include "runtime/interrupt.hpp"

namespace flare::fireworks::resources {
namespace {

std::timed_mutex g_mutex;
std::vector<Resource> g_resources;

// The value of `key` in the query of `path`, or "".
std::string query_value(std::string_view path, std::string_view key) {
  size_t q = path.find('?');
  if (q == std::string_view::npos) return "";
  std::string_view query = path.substr(q + 1);
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    if (item.size() > key.size() && item.starts_with(key) && item[key.size()] == '=')
      return std::string(item.substr(key.size() + 1));
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return "";
}

// "/v1/accounts/<a>/<collection>[/<id>][?...]" -> {"accounts/<a>/<collection>", id}.
bool split_path(std::string_view path, std::string& collection, std::string& id) {
  path = path.substr(0, path.find('?'));
  if (!path.starts_with("/v1/accounts/")) return false;
  path.remove_prefix(4);  // "accounts/<a>/<collection>[/<id>]"
  size_t account_end = path.find('/', 9);
  if (account_end == std::string_view::npos) return false;
  size_t collection_end = path.find('/', account_end + 1);
  collection = std::string(path.substr(0, collection_end));
  id = collection_end == std::string_view::npos ? "" : std::string(path.substr(collection_end + 1));
  return id.find('/') == std::string::npos && id.find(':') == std::string::npos;
}

void add(Kind kind, std::string name, const std::shared_ptr<const Connection>& connection) {
  std::lock_guard lock(g_mutex);
  for (auto& r : g_resources)
    if (r.kind == kind && r.name == name) return;
  g_resources.push_back({kind, std::move(name), connection});
  // The hard-exit path exists from the first resource on (its thread is started here).
  flare::interrupt::set_emergency_hook([] { release_all(2.0); });
}

void remove(Kind kind, const std::string& name) {
  std::lock_guard lock(g_mutex);
  std::erase_if(g_resources, [&](const Resource& r) { return r.kind == kind && r.name == name; });
}

// Whether a PATCH body leaves the deployment with replicas: true / false, or
// nothing to say when it does not touch the replica counts.
int replicas_after_patch(std::string_view body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_object()) return -1;
  bool touched = false, any = false;
  for (const char* field : {"minReplicaCount", "maxReplicaCount"}) {
    auto it = j.find(field);
    if (it == j.end() || !it->is_number()) continue;
    touched = true;
    any = any || it->get<double>() > 0;
  }
  return touched ? (any ? 1 : 0) : -1;
}

}  // namespace

void note(const std::shared_ptr<const Connection>& connection, std::string_view method,
          std::string_view path, std::string_view body, int status) {
  bool ok = status >= 200 && status < 300;
  std::string collection, id;
  if (!(ok || status == 404) || !split_path(path, collection, id)) return;
  Kind kind;
  std::string id_key;
  if (collection.ends_with("/deployments")) {
    kind = Kind::Deployment;
    id_key = "deploymentId";
  } else if (collection.ends_with("/rlorTrainerJobs")) {
    kind = Kind::TrainerJob;
    id_key = "rlorTrainerJobId";
  } else {
    return;
  }
  if (method == "POST" && id.empty() && ok) {
    std::string created = query_value(path, id_key);
    if (!created.empty()) add(kind, collection + "/" + created, connection);
  } else if (method == "DELETE" && !id.empty()) {
    remove(kind, collection + "/" + id);
  } else if (method == "PATCH" && !id.empty() && ok && kind == Kind::Deployment) {
    int replicas = replicas_after_patch(body);
    if (replicas == 1) add(kind, collection + "/" + id, connection);
    if (replicas == 0) remove(kind, collection + "/" + id);
  }
}

std::vector<Resource> snapshot() {
  std::lock_guard lock(g_mutex);
  return g_resources;
}

void forget_all() {
  std::lock_guard lock(g_mutex);
  g_resources.clear();
}

ReleaseResult release_all(double timeout_s) {
  std::vector<Resource> todo;
  {
    // The thread that holds the lock may be stopped for good: do not wait on it long.
    std::unique_lock lock(g_mutex, std::defer_lock);
    if (!lock.try_lock_for(std::chrono::milliseconds(200))) return {};
    todo = g_resources;
  }
  ReleaseResult result;
  if (todo.empty()) return result;
  std::fprintf(stderr, "flare: releasing %zu cloud resource%s this script created\n", todo.size(),
               todo.size() == 1 ? "" : "s");
  net::ClientOptions options;
  options.interruptible = false;
  net::HttpClient client(options);
  std::vector<net::RequestId> ids;
  std::vector<int> outcome(todo.size(), 0);  // 0 running, 1 released, 2 failed
  for (size_t i = 0; i < todo.size(); i++) {
    const Resource& r = todo[i];
    net::Request req;
    req.url = r.connection->url_of(Plane::Control) + "/v1/" + r.name;
    if (r.kind == Kind::Deployment) {
      req.method = "PATCH";
      req.url += "?updateMask=min_replica_count,max_replica_count";
      req.body = R"({"minReplicaCount":0,"maxReplicaCount":0})";
    } else {
      req.method = "DELETE";
    }
    req.timeout_s = timeout_s;
    req.connect_timeout_s = timeout_s;
    r.connection->add_headers(req.headers, Plane::Control, !req.body.empty());
    req.verify_tls = r.connection->verify_tls(Plane::Control);
    try {
      ids.push_back(client.submit(std::move(req), [&outcome, i](net::Response* res, const Error*) {
        int status = res ? res->status : 0;
        outcome[i] = (status >= 200 && status < 300) || status == 404 ? 1 : 2;
      }));
    } catch (const Error&) {
      outcome[i] = 2;
    }
  }
  client.run_until(
      [&] {
        for (int o : outcome)
          if (o == 0) return false;
        return true;
      },
      timeout_s + 0.5);
  for (size_t i = 0; i < todo.size(); i++) {
    const Resource& r = todo[i];
    const char* what = r.kind == Kind::Deployment ? "scaled deployment" : "deleted trainer job";
    std::string name = redact_text(r.name, r.connection->api_key);
    if (outcome[i] == 1) {
      result.released++;
      std::fprintf(stderr, "flare: %s %s%s\n", what, name.c_str(),
                   r.kind == Kind::Deployment ? " to zero" : "");
      remove(r.kind, r.name);
    } else {
      result.failed++;
      std::fprintf(stderr, "flare: could not release %s (%s)\n", name.c_str(),
                   outcome[i] == 0 ? "timed out" : "request failed");
    }
  }
  std::fflush(stderr);
  return result;
}

}  // namespace flare::fireworks::resources
