#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <span>

#include "delta/codec.hpp"
#include "emulator/server/api_error.hpp"
#include "emulator/server/bucket.hpp"
#include "emulator/server/routes.hpp"
#include "emulator/server/state_paths.hpp"
#include "runtime/file_io.hpp"

namespace fs = std::filesystem;

namespace flare::emulator {
namespace {

struct JobHandle {
  std::string id;
  std::string bucket_dir;
  std::string last_snapshot;  // the trainer's previous sampler snapshot
  std::string base_model;
  std::shared_ptr<TrainerRuntime> rt;
};

// The running job the gateway path names; 404 / 503 otherwise.
JobHandle running_job(ControlPlane& cp, const httplib::Request& req) {
  check_account(cp, req.matches[1]);
  std::lock_guard lock(cp.mu);
  std::string id = req.matches[2];
  auto it = cp.jobs.find(id);
  if (it == cp.jobs.end())
    not_found("trainer job accounts/" + cp.account + "/rlorTrainerJobs/" + id + " not found");
  if (it->second.row.state != "JOB_STATE_RUNNING") {
    throw ApiError(503, "UNAVAILABLE",
                   "trainer job " + id + " is " + it->second.row.state + ", not RUNNING",
                   std::max(1.0, cp.opt.provision_delay_s));
  }
  return {id, it->second.row.bucket_dir, it->second.row.last_base,
          it->second.spec["trainingConfig"].value("baseModel", ""), it->second.rt};
}

// A list of numbers given either as a plain array or as Tinker's TensorData {data: [...]}.
template <typename T>
std::vector<T> numbers(const nlohmann::json& v, const std::string& field) {
  const nlohmann::json* arr = &v;
  if (v.is_object()) {
    auto it = v.find("data");
    if (it == v.end()) bad_request("field '" + field + "' must be a list or {\"data\": [...]}");
    arr = &*it;
  }
  if (!arr->is_array()) bad_request("field '" + field + "' must be a list of numbers");
  std::vector<T> out;
  out.reserve(arr->size());
  for (size_t i = 0; i < arr->size(); ++i) {
    const auto& x = (*arr)[i];
    if (!x.is_number())
      bad_request("field '" + field + "[" + std::to_string(i) + "]' must be a number");
    const std::string at = field + "[" + std::to_string(i) + "]";
    if constexpr (std::is_integral_v<T>) {
      if (!x.is_number_integer()) bad_request("field '" + at + "' must be an integer");
      // get<T>() would wrap: 4294967297 would come out as 1.
      bool fits = x.is_number_unsigned()
                      ? x.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max())
                      : x.get<int64_t>() >= std::numeric_limits<T>::min() &&
                            x.get<int64_t>() <= std::numeric_limits<T>::max();
      if (!fits) {
        bad_request("field '" + at + "' is " + x.dump() + ", outside [" +
                    std::to_string(std::numeric_limits<T>::min()) + ", " +
                    std::to_string(std::numeric_limits<T>::max()) + "]");
      }
    } else {
      // A JSON number past float's range (1e300) would become infinity.
      if (!std::isfinite(x.get<T>())) {
        bad_request("field '" + at + "' is " + x.dump() + ", not a finite 32-bit float");
      }
    }
    out.push_back(x.get<T>());
  }
  return out;
}

model::Datum parse_datum(const nlohmann::json& d, size_t index) {
  std::string at = "data[" + std::to_string(index) + "]";
  if (!d.is_object()) bad_request("field '" + at + "' must be an object");
  model::Datum out;
  auto mi = d.find("model_input");
  if (mi == d.end() || !mi->is_object() || !mi->contains("chunks") || !(*mi)["chunks"].is_array()) {
    bad_request("field '" + at + ".model_input.chunks' (a list) is required");
  }
  const auto& chunks = (*mi)["chunks"];
  for (size_t c = 0; c < chunks.size(); ++c) {
    std::string cf = at + ".model_input.chunks[" + std::to_string(c) + "]";
    std::string type = chunks[c].is_object() ? chunks[c].value("type", "encoded_text") : "";
    if (type != "encoded_text") bad_request("field '" + cf + ".type' must be 'encoded_text'");
    if (!chunks[c].contains("tokens")) bad_request("field '" + cf + ".tokens' is required");
    auto toks = numbers<int>(chunks[c]["tokens"], cf + ".tokens");
    out.tokens.insert(out.tokens.end(), toks.begin(), toks.end());
  }
  auto in = d.find("loss_fn_inputs");
  if (in == d.end() || !in->is_object())
    bad_request("field '" + at + ".loss_fn_inputs' is required");
  static const std::set<std::string> known = {"target_tokens", "weights", "logprobs", "advantages",
                                              "ref_logprobs"};
  for (auto& [k, v] : in->items()) {
    if (!known.count(k)) bad_request("unknown field '" + at + ".loss_fn_inputs." + k + "'");
  }
  if (!in->contains("target_tokens"))
    bad_request("field '" + at + ".loss_fn_inputs.target_tokens' is required");
  out.target_tokens = numbers<int>((*in)["target_tokens"], at + ".loss_fn_inputs.target_tokens");
  if (in->contains("weights"))
    out.weights = numbers<float>((*in)["weights"], at + ".loss_fn_inputs.weights");
  if (in->contains("logprobs")) {
    out.sampler_logprobs = numbers<float>((*in)["logprobs"], at + ".loss_fn_inputs.logprobs");
  }
  if (in->contains("advantages")) {
    out.advantages = numbers<float>((*in)["advantages"], at + ".loss_fn_inputs.advantages");
  }
  if (in->contains("ref_logprobs")) {
    out.ref_logprobs = numbers<float>((*in)["ref_logprobs"], at + ".loss_fn_inputs.ref_logprobs");
  }
  return out;
}

model::LossFn parse_loss(const std::string& name) {
  model::LossFn fn;
  if (!model::parse_loss_name(name, fn))
    bad_request("loss_fn '" + name + "' is not supported (supported: " + model::loss_names() + ")");
  return fn;
}

// One of `choices` (the wire names, in enum order) for a string field of loss_fn_config.
template <typename E, size_t N>
E parse_choice(const nlohmann::json& v, const std::string& field,
               const std::array<const char*, N>& choices) {
  std::string list;
  for (const char* c : choices) list += (list.empty() ? "'" : ", '") + std::string(c) + "'";
  if (!v.is_string()) bad_request("field '" + field + "' must be one of " + list);
  for (size_t i = 0; i < N; ++i)
    if (v.get<std::string>() == choices[i]) return static_cast<E>(i);
  bad_request("field '" + field + "' is '" + v.get<std::string>() + "', not one of " + list);
}

// Tinker's clip names (clip_low_threshold / clip_high_threshold bound the ratio) and flare's
// options; see docs/losses.md. Values out of range fail in check_loss_config, naming the field.
model::LossConfig parse_loss_config(const nlohmann::json& input, model::LossFn loss) {
  model::LossConfig c;
  auto it = input.find("loss_fn_config");
  if (it != input.end() && !it->is_null()) {
    if (!it->is_object()) bad_request("field 'loss_fn_config' must be an object");
    for (auto& [k, v] : it->items()) {
      std::string f = "loss_fn_config." + k;
      if (k == "normalization") {
        c.normalization = parse_choice<model::Normalization>(
            v, f, std::array<const char*, 5>{"default", "sum", "token", "sequence", "constant"});
        continue;
      }
      if (k == "kl_estimator") {
        c.kl_estimator =
            parse_choice<model::KlEstimator>(v, f, std::array<const char*, 3>{"k1", "k2", "k3"});
        continue;
      }
      if (!v.is_number()) bad_request("field '" + f + "' must be a number");
      double x = v.get<double>();
      if (k == "clip_epsilon" || k == "eps_clip") {
        c.clip_low = c.clip_high = static_cast<float>(x);
      } else if (k == "clip_low" || k == "eps_clip_low") {
        c.clip_low = static_cast<float>(x);
      } else if (k == "clip_high" || k == "eps_clip_high") {
        c.clip_high = static_cast<float>(x);
      } else if (k == "clip_low_threshold") {  // Tinker's form: a bound on the ratio
        c.clip_low = static_cast<float>(1.0 - x);
      } else if (k == "clip_high_threshold") {
        c.clip_high = static_cast<float>(x - 1.0);
      } else if (k == "normalization_tokens") {
        c.normalization_tokens = x;
      } else if (k == "tis_cap") {
        c.tis_cap = x;
      } else if (k == "kl_beta") {
        c.kl_beta = x;
      } else if (k == "dpo_beta") {
        c.dpo_beta = x;
      } else {
        bad_request("unknown field '" + f +
                    "' (supported: clip_epsilon, clip_low, clip_high, clip_low_threshold, "
                    "clip_high_threshold, normalization, normalization_tokens, tis_cap, kl_beta, "
                    "kl_estimator, dpo_beta)");
      }
    }
  }
  model::check_loss_config(loss, c);  // std::invalid_argument: a 400 naming the field
  return c;
}

void run_forward(RouteEnv& env, const httplib::Request& req, httplib::Response& res,
                 bool backward) {
  JobHandle job = running_job(env.cp, req);
  nlohmann::json body = parse_body(req);
  const char* key = backward ? "forward_backward_input" : "forward_input";
  auto it = body.find(key);
  if (it == body.end() && !backward) it = body.find("forward_backward_input");
  if (it == body.end() || !it->is_object())
    bad_request(std::string("field '") + key + "' (an object) is required");
  const nlohmann::json& input = *it;
  if (!input.contains("data") || !input["data"].is_array())
    bad_request(std::string("field '") + key + ".data' (a list) is required");
  std::vector<model::Datum> data;
  for (size_t i = 0; i < input["data"].size(); ++i)
    data.push_back(parse_datum(input["data"][i], i));
  model::LossFn loss = parse_loss(get_string(input, "loss_fn", "cross_entropy"));
  model::LossConfig cfg = parse_loss_config(input, loss);

  std::lock_guard lock(job.rt->mu);
  if (!job.rt->trainer) not_found("trainer job " + job.id + " was deleted");
  model::ForwardBackwardResult r = backward ? job.rt->trainer->forward_backward(data, loss, cfg)
                                            : job.rt->trainer->forward(data, loss, cfg);
  if (!std::isfinite(r.loss)) {
    // The next optim_step finds the gradient not finite and discards it.
    bad_request("the loss of this batch is " + std::to_string(r.loss) +
                " (check the datums' weights, advantages and logprobs); " +
                (backward ? "its gradient will be discarded by the next optim_step, which fails"
                          : "nothing was changed"));
  }
  nlohmann::json outputs = nlohmann::json::array();
  for (const auto& lp : r.logprobs) outputs.push_back({{"logprobs", lp}});
  nlohmann::json metrics = {{"loss", r.loss},
                            {"mean_ratio", r.mean_ratio},
                            {"clip_fraction", r.clip_fraction},
                            {"logprob_mismatch", r.logprob_mismatch},
                            {"tokens", r.tokens}};
  if (r.kl_tokens > 0) metrics["kl"] = r.kl;  // against the datums' ref_logprobs
  if (cfg.tis_cap > 0) metrics["tis_fraction"] = r.tis_fraction;
  if (loss == model::LossFn::Dpo) {
    metrics["preference_accuracy"] = r.preference_accuracy;
    metrics["reward_margin"] = r.reward_margin;
  }
  send_json(res, 200,
            {{"loss_fn_output_type", get_string(input, "loss_fn", "cross_entropy")},
             {"loss_fn_outputs", outputs},
             {"metrics", metrics}});
}

void optim_step(RouteEnv& env, const httplib::Request& req, httplib::Response& res) {
  JobHandle job = running_job(env.cp, req);
  nlohmann::json body = parse_body(req);
  model::AdamParams p;
  if (auto it = body.find("adam_params"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) bad_request("field 'adam_params' must be an object");
    static const std::set<std::string> known = {"learning_rate", "beta1",        "beta2",
                                                "eps",           "weight_decay", "grad_clip_norm"};
    for (auto& [k, v] : it->items()) {
      if (!known.count(k)) bad_request("unknown field 'adam_params." + k + "'");
    }
    p.learning_rate = get_number(*it, "learning_rate", p.learning_rate);
    p.beta1 = get_number(*it, "beta1", p.beta1);
    p.beta2 = get_number(*it, "beta2", p.beta2);
    p.eps = get_number(*it, "eps", p.eps);
    p.weight_decay = get_number(*it, "weight_decay", p.weight_decay);
    p.grad_clip_norm = get_number(*it, "grad_clip_norm", p.grad_clip_norm);
  }
  if (!(p.learning_rate >= 0)) bad_request("adam_params.learning_rate must be >= 0");
  if (!(p.beta1 >= 0 && p.beta1 < 1)) bad_request("adam_params.beta1 must be in [0, 1)");
  if (!(p.beta2 >= 0 && p.beta2 < 1)) bad_request("adam_params.beta2 must be in [0, 1)");
  if (!(p.eps >= 0)) bad_request("adam_params.eps must be >= 0");
  if (!(p.grad_clip_norm >= 0)) bad_request("adam_params.grad_clip_norm must be >= 0");
  std::lock_guard lock(job.rt->mu);
  if (!job.rt->trainer) not_found("trainer job " + job.id + " was deleted");
  model::OptimResult r = job.rt->trainer->optim_step(p);
  send_json(res, 200,
            {{"grad_norm", r.grad_norm},
             {"step", r.step},
             {"metrics", {{"grad_norm", r.grad_norm}, {"step", r.step}}}});
}

std::string snapshot_name_of(const std::string& path) {
  std::string name = path.substr(path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1);
  try {
    check_snapshot_name(name);
  } catch (const std::invalid_argument& e) {
    bad_request(std::string("path: ") + e.what());
  }
  return name;
}

// Full weights of sampler snapshot `name` in `bucket`: a base file as it is, a delta rebuilt on
// the snapshots it chains back to (for a trainer restarted since it wrote the chain).
std::shared_ptr<const Checkpoint> snapshot_weights(const std::string& state_dir,
                                                   const std::string& bucket,
                                                   const std::string& name) {
  auto gone = [&](const std::string& why) {
    throw ApiError(409, "FAILED_PRECONDITION",
                   "the trainer's previous sampler snapshot '" + name +
                       "' cannot be rebuilt from the bucket (" + why + "); save a base first");
  };
  std::vector<std::string> deltas;  // newest first
  std::set<std::string> seen;
  std::string at = name;
  while (!fs::is_regular_file(base_path(bucket, at))) {
    if (!fs::is_regular_file(delta_path(bucket, at))) gone("'" + at + "' is not in it");
    if (!seen.insert(at).second) gone("the deltas from '" + at + "' form a loop");
    deltas.push_back(at);
    try {
      at = delta::inspect_file(
               inside_state_dir(state_dir, delta_path(bucket, at), "snapshot '" + at + "'"))
               .base_identity;
    } catch (const std::exception& e) {
      gone(std::string("delta '") + deltas.back() + "': " + e.what());
    }
  }
  auto weights = std::make_shared<const Checkpoint>(
      read_checkpoint(inside_state_dir(state_dir, base_path(bucket, at), "snapshot '" + at + "'")));
  for (auto it = deltas.rbegin(); it != deltas.rend(); ++it) {
    try {
      weights = std::make_shared<const Checkpoint>(
          delta::apply(views(*weights),
                       read_file(inside_state_dir(state_dir, delta_path(bucket, *it),
                                                  "snapshot '" + *it + "'")))
              .tensors);
    } catch (const std::exception& e) {
      gone(std::string("delta '") + *it + "': " + e.what());
    }
  }
  return weights;
}

// `w` itself; a 400 when it holds a NaN or infinity, so that such weights are
// never saved (and so never hotloaded).
model::Weights finite_weights(model::Weights w, const std::string& snapshot) {
  for (const auto& t : w) {
    for (float x : t.data) {
      if (!std::isfinite(x)) {
        throw ApiError(400, "FAILED_PRECONDITION",
                       "the trainer's weights hold a NaN or infinity (tensor '" + t.name +
                           "'); snapshot '" + snapshot + "' is not saved");
      }
    }
  }
  return w;
}

// Sampler snapshots chain as the Fireworks SDK's WeightSyncer expects: a delta is written
// against this trainer's previous sampler snapshot (base, merged_base or delta), which is
// what the deployment serves when every snapshot is hotloaded in turn. merged_base (a LoRA
// folded into the full weights) is a full base, and for a full-weight trainer the same as base.
// A LoRA trainer's snapshots stand alone (see below) and leave the chain as it is.
void save_weights(RouteEnv& env, const httplib::Request& req, httplib::Response& res) {
  JobHandle job = running_job(env.cp, req);
  nlohmann::json body = parse_body(req);
  std::string path = get_string(body, "path", "");
  if (path.empty()) bad_request("field 'path' is required");
  std::string name = snapshot_name_of(path);
  std::string type = get_string(body, "checkpoint_type", "base");
  if (type != "base" && type != "delta" && type != "merged_base")
    bad_request("checkpoint_type '" + type + "' must be 'base', 'delta' or 'merged_base'");

  std::lock_guard lock(job.rt->mu);
  if (!job.rt->trainer) not_found("trainer job " + job.id + " was deleted");
  // Resolved inside the state dir (links included) before anything is created.
  const std::string dir =
      inside_state_dir(env.cp.state_dir, snapshot_dir(job.bucket_dir, name), "path '" + name + "'");
  auto file_in_dir = [&](const std::string& file) {
    fs::create_directories(dir);
    return inside_state_dir(env.cp.state_dir, dir + "/" + file, "path '" + name + "'");
  };
  const model::LoraConfig& lora = job.rt->trainer->lora();
  if (lora.rank > 0) {
    // An adapter is standalone: 'base' and 'delta' both save the whole PEFT adapter
    // (never a delta chain); 'merged_base' saves the base with the adapter folded in.
    if (type == "merged_base") {
      write_checkpoint(file_in_dir(kBaseFile),
                       to_checkpoint(finite_weights(job.rt->trainer->merged_weights(), name)));
    } else {
      fs::create_directories(dir);
      write_peft_adapter(dir, job.base_model, lora.rank, lora.alpha,
                         finite_weights(job.rt->trainer->adapter_weights(), name));
    }
    send_json(res, 200,
              {{"path", name},
               {"snapshot_name", name},
               {"checkpoint_type", type == "merged_base" ? "merged_base" : "base"},
               {"lora_rank", lora.rank}});
    return;
  }
  auto next = std::make_shared<const Checkpoint>(
      to_checkpoint(finite_weights(job.rt->trainer->sampler_weights(), name)));
  nlohmann::json out = {{"path", name}, {"snapshot_name", name}, {"checkpoint_type", type}};
  if (type == "delta") {
    if (job.last_snapshot.empty()) {
      bad_request(
          "checkpoint_type 'delta' needs a previous sampler snapshot from this trainer; save a "
          "base first");
    }
    if (!job.rt->last_snapshot) {
      job.rt->last_snapshot = snapshot_weights(env.cp.state_dir, job.bucket_dir, job.last_snapshot);
    }
    delta::EncodeOptions opts;
    opts.base_identity = job.last_snapshot;
    auto bytes =
        delta::encode(views(*job.rt->last_snapshot), views(*next), {{"format", "pt"}}, opts);
    write_file_atomic(file_in_dir(kDeltaFile), bytes);  // a new temporary name: no link followed
    out["previous_snapshot_identity"] = job.last_snapshot;
    out["compression_format"] = std::string(delta::kFormatName);
    // "alder32" (sic) is the protocol's own spelling of Adler-32, as the SDK sends it.
    out["checksum_format"] = "alder32";
  } else {
    write_checkpoint(file_in_dir(kBaseFile), *next);
  }
  job.rt->last_snapshot = next;
  std::lock_guard cp_lock(env.cp.mu);
  auto it = env.cp.jobs.find(job.id);
  if (it != env.cp.jobs.end()) {
    it->second.row.last_base = name;  // the column holds the last sampler snapshot of any type
    it->second.row.update_time = now_s();
    env.cp.save(it->second);
  }
  send_json(res, 200, out);
}

std::string state_path(const ControlPlane& cp, const std::string& job, const std::string& name) {
  const std::string what = "path '" + name + "'";
  fs::create_directories(
      inside_state_dir(cp.state_dir, cp.state_dir + "/trainer_states/" + job, what));
  return inside_state_dir(cp.state_dir,
                          cp.state_dir + "/trainer_states/" + job + "/" + name + ".state", what);
}

void save_state(RouteEnv& env, const httplib::Request& req, httplib::Response& res) {
  JobHandle job = running_job(env.cp, req);
  nlohmann::json body = parse_body(req);
  std::string name = snapshot_name_of(get_string(body, "path", ""));
  std::lock_guard lock(job.rt->mu);
  if (!job.rt->trainer) not_found("trainer job " + job.id + " was deleted");
  std::string bytes = job.rt->trainer->save_state();
  write_file_atomic(state_path(env.cp, job.id, name), std::as_bytes(std::span(bytes)));
  send_json(res, 200, {{"path", name}, {"step", job.rt->trainer->step()}});
}

// The SDK's resolve_checkpoint_path(name, source_job_id) gives "cross_job://<job>/<name>": the
// state another trainer job of the account saved.
constexpr std::string_view kCrossJob = "cross_job://";

void load_state(RouteEnv& env, const httplib::Request& req, httplib::Response& res) {
  JobHandle job = running_job(env.cp, req);
  nlohmann::json body = parse_body(req);
  std::string path = get_string(body, "path", "");
  std::string source = job.id;
  if (path.rfind(kCrossJob, 0) == 0) {
    std::string ref = path.substr(kCrossJob.size());
    size_t slash = ref.find('/');
    source = ref.substr(0, slash);
    bool ok = slash != std::string::npos && !source.empty();
    for (char c : source)
      ok = ok && (std::islower(static_cast<unsigned char>(c)) ||
                  std::isdigit(static_cast<unsigned char>(c)) || c == '-');
    if (!ok) bad_request("path '" + path + "' must look like 'cross_job://<job id>/<checkpoint>'");
    path = ref.substr(slash + 1);
  }
  std::string name = snapshot_name_of(path);
  std::string file = inside_state_dir(
      env.cp.state_dir, env.cp.state_dir + "/trainer_states/" + source + "/" + name + ".state",
      "path '" + path + "'");
  std::ifstream in(file, std::ios::binary);
  if (!in) not_found("no saved state '" + name + "' for trainer job " + source);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::lock_guard lock(job.rt->mu);
  if (!job.rt->trainer) not_found("trainer job " + job.id + " was deleted");
  job.rt->trainer->load_state(bytes);
  send_json(res, 200, {{"path", name}, {"step", job.rt->trainer->step()}});
}

// The SDK's list_checkpoints: the names save_state saved, sorted.
void list_checkpoints(RouteEnv& env, const httplib::Request& req, httplib::Response& res) {
  JobHandle job = running_job(env.cp, req);
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(env.cp.state_dir + "/trainer_states/" + job.id, ec)) {
    std::string f = e.path().filename().string();
    if (f.size() > 6 && f.compare(f.size() - 6, 6, ".state") == 0) {
      names.push_back(f.substr(0, f.size() - 6));
    }
  }
  std::sort(names.begin(), names.end());
  send_json(res, 200, {{"checkpoints", names}});
}

}  // namespace

void add_trainer_routes(Router& r, RouteEnv& env) {
  const std::string prefix = R"(/training/v1/rlorTrainerJobs/([^/]+)/([^/]+)/api/v1/)";
  r.get(prefix + "healthz", Auth::Any, [&env](const httplib::Request& req, httplib::Response& res) {
    JobHandle job = running_job(env.cp, req);
    send_json(res, 200, {{"status", "ok"}, {"job", job.id}});
  });
  // Each step that changes the trainer runs once per request id (see replay_cache.hpp).
  auto once = [&r, &env, &prefix](const char* op, ReplayCache::Handler h,
                                  BodyLimit limit = BodyLimit::Control) {
    r.post(
        prefix + op, Auth::Any,
        [&env, h = std::move(h)](const httplib::Request& req, httplib::Response& res) {
          env.replays.run(req, res, h);
        },
        limit);
  };
  once(
      "forward_backward",
      [&env](const httplib::Request& req, httplib::Response& res) {
        run_forward(env, req, res, true);
      },
      BodyLimit::Training);
  r.post(
      prefix + "forward", Auth::Any,
      [&env](const httplib::Request& req, httplib::Response& res) {
        run_forward(env, req, res, false);
      },
      BodyLimit::Training);
  once("optim_step",
       [&env](const httplib::Request& req, httplib::Response& res) { optim_step(env, req, res); });
  once("save_weights_for_sampler", [&env](const httplib::Request& req, httplib::Response& res) {
    save_weights(env, req, res);
  });
  once("save_state",
       [&env](const httplib::Request& req, httplib::Response& res) { save_state(env, req, res); });
  r.get(prefix + "list_checkpoints", Auth::Any,
        [&env](const httplib::Request& req, httplib::Response& res) {
          list_checkpoints(env, req, res);
        });
  once("load_state",
       [&env](const httplib::Request& req, httplib::Response& res) { load_state(env, req, res); });
}

}  // namespace flare::emulator
