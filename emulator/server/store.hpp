#pragma once
// The emulator's durable state: one SQLite database (WAL) in the state dir.
// Every write is one transaction, so a crash leaves either the old or the new
// row, never a torn one.
#include <mutex>
#include <optional>
#include <string>
#include <vector>

struct sqlite3;

namespace flare::emulator {

// The columns deployments and trainer jobs share.
struct ResourceRow {
  std::string id;
  std::string spec;  // JSON object of the camelCase fields the client set
  std::string state;
  std::string message;
  double create_time = 0;
  double update_time = 0;
  double deadline = 0;  // when the current phase (CREATING, DELETING, ...) ends
  std::string bucket_dir;
};

struct DeploymentRow : ResourceRow {
  std::string snapshot;       // identity the replica serves
  std::string base_snapshot;  // the full snapshot the serving chain starts from
  std::string snapshot_file;  // full checkpoint of `snapshot` (replica dir)
  std::string base_file;      // full checkpoint of `base_snapshot` (replica dir)
};

struct TrainerJobRow : ResourceRow {
  std::string last_base;  // the last sampler snapshot this trainer saved (any type)
};

class Store {
 public:
  explicit Store(const std::string& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  std::optional<std::string> meta(const std::string& key);
  void set_meta(const std::string& key, const std::string& value);

  std::vector<DeploymentRow> deployments();
  void put(const DeploymentRow& row);
  void erase_deployment(const std::string& id);

  std::vector<TrainerJobRow> trainer_jobs();
  void put(const TrainerJobRow& row);
  void erase_trainer_job(const std::string& id);

 private:
  void exec(const char* sql);
  sqlite3* db_ = nullptr;
  std::mutex mu_;
};

}  // namespace flare::emulator
