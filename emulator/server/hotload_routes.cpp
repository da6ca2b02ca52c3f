#include <cstring>
#include <fstream>
#include <set>

#include "delta/codec.hpp"
#include "delta/delta_format.hpp"
#include "emulator/server/api_error.hpp"
#include "emulator/server/bucket.hpp"
#include "emulator/server/replica.hpp"
#include "emulator/server/routes.hpp"
#include "emulator/server/state_paths.hpp"
#include "runtime/file_io.hpp"

namespace flare::emulator {
namespace {

// The replica of the deployment named by the fireworks-deployment header.
Deployment& target(ControlPlane& cp, const httplib::Request& req) {
  std::string name = req.get_header_value("fireworks-deployment");
  if (name.empty()) {
    bad_request("header 'fireworks-deployment: accounts/<acct>/deployments/<id>' is required");
  }
  std::string prefix = "accounts/" + cp.account + "/deployments/";
  if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size()) {
    bad_request("header fireworks-deployment must look like '" + prefix + "<id>', got '" + name +
                "'");
  }
  auto it = cp.deployments.find(name.substr(prefix.size()));
  if (it == cp.deployments.end() || it->second.row.state == "DELETING") {
    not_found("deployment " + name + " not found");
  }
  Deployment& d = it->second;
  std::string model = req.get_header_value("fireworks-model");
  if (!model.empty() && model != d.base_model()) {
    bad_request("header fireworks-model '" + model +
                "' does not match the deployment's base model '" + d.base_model() + "'");
  }
  return d;
}

std::string bucket_from_header(const ControlPlane& cp, const httplib::Request& req,
                               const std::string& fallback) {
  std::string url = req.get_header_value("x-fireworks-hot-load-source-url");
  if (url.empty()) return fallback;
  if (url.rfind("file://", 0) != 0) {
    bad_request("x-fireworks-hot-load-source-url must be a file:// URL here, got '" + url + "'");
  }
  std::string dir = url.substr(7);
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return inside_state_dir(cp.state_dir, dir, "x-fireworks-hot-load-source-url '" + url + "'");
}

// Whether the delta snapshot `identity` in `bucket` is a flare delta (by its magic).
// A bad identity or a missing file is left for start_hotload to report as such.
bool is_flare_delta(const ControlPlane& cp, const std::string& bucket,
                    const std::string& identity) {
  std::string path;
  try {
    path = inside_state_dir(cp.state_dir, delta_path(bucket, identity), "snapshot");
  } catch (const std::exception&) {
    return true;
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) return true;
  char magic[sizeof delta::kMagic] = {};
  return f.read(magic, sizeof magic) && std::memcmp(magic, delta::kMagic, sizeof magic) == 0;
}

// The previous snapshot a flare delta in the bucket records, or "" when it records none or
// cannot be read (the loader then reports what is wrong with the file).
std::string recorded_previous(const ControlPlane& cp, const std::string& bucket,
                              const std::string& identity) {
  try {
    return delta::parse_delta(
               read_file(inside_state_dir(cp.state_dir, delta_path(bucket, identity), "snapshot")))
        .header.base_identity;
  } catch (const std::exception&) {
    return "";
  }
}

void trigger(RouteEnv& env, const httplib::Request& req, httplib::Response& res) {
  ControlPlane& cp = env.cp;
  nlohmann::json body = parse_body(req);
  static const std::set<std::string> fields = {"identity", "reset_prompt_cache",
                                               "incremental_snapshot_metadata"};
  for (auto& [k, v] : body.items()) {
    if (!fields.count(k)) bad_request("unknown field '" + k + "'");
  }
  HotloadRequest hr;
  bool arc_v2_label = false;
  hr.identity = get_string(body, "identity", "");
  if (hr.identity.empty()) bad_request("field 'identity' is required");
  get_bool(body, "reset_prompt_cache", true);  // accepted; there is no prompt cache to reset
  if (auto meta = body.find("incremental_snapshot_metadata");
      meta != body.end() && !meta->is_null()) {
    if (!meta->is_object()) bad_request("field 'incremental_snapshot_metadata' must be an object");
    static const std::set<std::string> mfields = {"previous_snapshot_identity",
                                                  "compression_format", "checksum_format"};
    for (auto& [k, v] : meta->items()) {
      if (!mfields.count(k)) bad_request("unknown field 'incremental_snapshot_metadata." + k + "'");
    }
    hr.delta = true;
    hr.previous = get_string(*meta, "previous_snapshot_identity", "");
    if (hr.previous.empty()) {
      bad_request("field 'incremental_snapshot_metadata.previous_snapshot_identity' is required");
    }
    std::string format = get_string(*meta, "compression_format", "");
    if (format == "arc_v2") {
      arc_v2_label = true;  // checked against the snapshot's file below
    } else if (format != delta::kFormatName) {
      bad_request("incremental_snapshot_metadata.compression_format '" + format +
                  "' is not supported (supported: " + std::string(delta::kFormatName) + ")");
    }
    // "alder32" (sic) is how the protocol and the SDK spell Adler-32; the right spelling is
    // taken as well.
    std::string checksum = get_string(*meta, "checksum_format", "alder32");
    if (checksum != "alder32" && checksum != "adler32") {
      bad_request("incremental_snapshot_metadata.checksum_format '" + checksum +
                  "' is not supported (supported: alder32, adler32)");
    }
  }

  std::lock_guard lock(cp.mu);
  Deployment& d = target(cp, req);
  std::string name = "accounts/" + cp.account + "/deployments/" + d.row.id;
  if (d.row.state != "READY") {
    throw ApiError(425, "DEPLOYMENT_NOT_READY", "deployment " + name + " is " + d.row.state);
  }
  if (!d.spec.value("enableHotLoad", true)) {
    throw ApiError(400, "FAILED_PRECONDITION",
                   "deployment " + name + " was created with enableHotLoad=false");
  }
  if (d.max_replicas() == 0) {
    throw ApiError(503, "DEPLOYMENT_SCALED_TO_ZERO",
                   "deployment " + name + " is scaled to zero (maxReplicaCount is 0)");
  }
  if (d.serving->phase != Phase::Up) {
    cp.request_scale_up(d);
    throw ApiError(
        503, "DEPLOYMENT_SCALING_UP",
        "DEPLOYMENT_SCALING_UP: deployment " + name + " has no replica yet; retry shortly",
        std::max(1.0, cp.opt.provision_delay_s));
  }
  hr.bucket_dir = bucket_from_header(cp, req, d.row.bucket_dir);
  // The Fireworks SDK labels every delta "arc_v2", the only name the cloud takes. The
  // emulator does not implement arc_v2 (its layout is not public); it accepts the label
  // for a delta its own trainer wrote, whose file names its real format in its magic.
  if (arc_v2_label && !is_flare_delta(cp, hr.bucket_dir, hr.identity)) {
    const std::string flare_format(delta::kFormatName);
    bad_request(
        "incremental_snapshot_metadata.compression_format 'arc_v2' is not supported "
        "(supported: " +
        flare_format +
        "; a delta labelled arc_v2 is accepted only when "
        "its file is a " +
        flare_format + " delta, as the emulator's trainer writes)");
  }
  // A delta must name the snapshot served (start_hotload checks that) and be made against it.
  if (hr.delta && hr.previous == d.row.snapshot) {
    std::string recorded = recorded_previous(cp, hr.bucket_dir, hr.identity);
    if (!recorded.empty() && recorded != hr.previous) {
      std::string message = "delta snapshot '" + hr.identity + "' was made against '" + recorded +
                            "', not against '" + hr.previous +
                            "', the snapshot this replica serves and the one "
                            "incremental_snapshot_metadata.previous_snapshot_identity names";
      d.serving->loading = {"error", hr.identity, message};
      bad_request(message);
    }
  }
  d.serving->last_used = now_s();
  start_hotload(cp, d, hr);
  send_json(res, 200,
            {{"identity", hr.identity},
             {"loading_state",
              {{"stage", d.serving->loading.stage}, {"target_snapshot_identity", hr.identity}}}});
}

void status(RouteEnv& env, const httplib::Request& req, httplib::Response& res) {
  ControlPlane& cp = env.cp;
  std::lock_guard lock(cp.mu);
  Deployment& d = target(cp, req);
  nlohmann::json replicas = nlohmann::json::array();
  const Serving& s = *d.serving;
  if (d.row.state == "READY" && s.phase == Phase::Up) {
    nlohmann::json ls = {{"stage", s.loading.stage},
                         {"target_snapshot_identity", s.loading.target}};
    if (!s.loading.message.empty()) ls["message"] = s.loading.message;
    nlohmann::json adapters = nlohmann::json::array();
    if (s.adapter) adapters.push_back({{"identity", d.row.snapshot}, {"status", "loaded"}});
    for (const auto& [id, adapter] : s.addons) {  // an engine's LoRA addons
      auto dm = cp.deployed_models.find(id);
      if (dm == cp.deployed_models.end()) continue;
      adapters.push_back({{"identity", "accounts/" + cp.account + "/models/" + dm->second.model_id},
                          {"deployed_model", "accounts/" + cp.account + "/deployedModels/" + id},
                          {"status", "loaded"}});
    }
    replicas.push_back({{"current_snapshot_identity", d.row.snapshot},
                        {"base_snapshot_identity", d.row.base_snapshot},
                        {"readiness", true},
                        {"loading_state", ls},
                        {"loaded_adapters", adapters}});
  }
  send_json(res, 200, {{"replicas", replicas}});
}

}  // namespace

void add_hotload_routes(Router& r, RouteEnv& env) {
  r.post("/hot_load/v1/models/hot_load", Auth::Bearer,
         [&env](const httplib::Request& req, httplib::Response& res) { trigger(env, req, res); });
  r.get("/hot_load/v1/models/hot_load", Auth::Bearer,
        [&env](const httplib::Request& req, httplib::Response& res) { status(env, req, res); });
}

}  // namespace flare::emulator
