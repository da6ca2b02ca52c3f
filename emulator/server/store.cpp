#include "emulator/server/store.hpp"

#include <sqlite3.h>

#include <stdexcept>

namespace flare::emulator {
namespace {

const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deployments(
  id TEXT PRIMARY KEY, spec TEXT NOT NULL, state TEXT NOT NULL, message TEXT NOT NULL,
  create_time REAL NOT NULL, update_time REAL NOT NULL, deadline REAL NOT NULL,
  bucket_dir TEXT NOT NULL, snapshot TEXT NOT NULL, base_snapshot TEXT NOT NULL,
  snapshot_file TEXT NOT NULL, base_file TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trainer_jobs(
  id TEXT PRIMARY KEY, spec TEXT NOT NULL, state TEXT NOT NULL, message TEXT NOT NULL,
  create_time REAL NOT NULL, update_time REAL NOT NULL, deadline REAL NOT NULL,
  bucket_dir TEXT NOT NULL, last_base TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records(
  kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY(kind, id));
)sql";

// One prepared statement, finalized on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &st_, nullptr) != SQLITE_OK) {
      throw std::runtime_error(std::string("sqlite prepare: ") + sqlite3_errmsg(db));
    }
  }
  ~Stmt() { sqlite3_finalize(st_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int i, const std::string& s) {
    sqlite3_bind_text(st_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind(int i, double d) {
    sqlite3_bind_double(st_, i, d);
    return *this;
  }
  bool step() {
    int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw std::runtime_error(std::string("sqlite step: ") + sqlite3_errmsg(db_));
  }
  std::string text(int col) {
    auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st_, col));
    return p ? std::string(p, sqlite3_column_bytes(st_, col)) : std::string();
  }
  double real(int col) { return sqlite3_column_double(st_, col); }

 private:
  sqlite3* db_;
  sqlite3_stmt* st_ = nullptr;
};

// Columns 0..7 of both tables, in this order.
constexpr const char* kResourceColumns =
    "id, spec, state, message, create_time, update_time, deadline, bucket_dir";

void read_resource(Stmt& st, ResourceRow& r) {
  r.id = st.text(0);
  r.spec = st.text(1);
  r.state = st.text(2);
  r.message = st.text(3);
  r.create_time = st.real(4);
  r.update_time = st.real(5);
  r.deadline = st.real(6);
  r.bucket_dir = st.text(7);
}

void bind_resource(Stmt& st, const ResourceRow& r) {
  st.bind(1, r.id).bind(2, r.spec).bind(3, r.state).bind(4, r.message);
  st.bind(5, r.create_time).bind(6, r.update_time).bind(7, r.deadline).bind(8, r.bucket_dir);
}

}  // namespace

Store::Store(const std::string& path) {
  if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    throw std::runtime_error("cannot open state database " + path + ": " + msg);
  }
  sqlite3_busy_timeout(db_, 5000);
  exec("PRAGMA journal_mode=WAL");
  exec("PRAGMA synchronous=FULL");
  exec(kSchema);
}

Store::~Store() {
  sqlite3_close(db_);
}

void Store::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    throw std::runtime_error("sqlite: " + msg);
  }
}

std::optional<std::string> Store::meta(const std::string& key) {
  std::lock_guard lock(mu_);
  Stmt st(db_, "SELECT value FROM meta WHERE key = ?");
  st.bind(1, key);
  if (!st.step()) return std::nullopt;
  return st.text(0);
}

void Store::set_meta(const std::string& key, const std::string& value) {
  std::lock_guard lock(mu_);
  Stmt st(db_,
          "INSERT INTO meta(key, value) VALUES(?, ?) "
          "ON CONFLICT(key) DO UPDATE SET value = excluded.value");
  st.bind(1, key).bind(2, value);
  st.step();
}

std::vector<DeploymentRow> Store::deployments() {
  std::lock_guard lock(mu_);
  Stmt st(db_, (std::string("SELECT ") + kResourceColumns +
                ", snapshot, base_snapshot, snapshot_file, base_file FROM deployments ORDER BY id")
                   .c_str());
  std::vector<DeploymentRow> out;
  while (st.step()) {
    DeploymentRow r;
    read_resource(st, r);
    r.snapshot = st.text(8);
    r.base_snapshot = st.text(9);
    r.snapshot_file = st.text(10);
    r.base_file = st.text(11);
    out.push_back(std::move(r));
  }
  return out;
}

void Store::put(const DeploymentRow& r) {
  std::lock_guard lock(mu_);
  Stmt st(db_, (std::string("INSERT OR REPLACE INTO deployments(") + kResourceColumns +
                ", snapshot, base_snapshot, snapshot_file, base_file) "
                "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
                   .c_str());
  bind_resource(st, r);
  st.bind(9, r.snapshot).bind(10, r.base_snapshot).bind(11, r.snapshot_file).bind(12, r.base_file);
  st.step();
}

void Store::erase_deployment(const std::string& id) {
  std::lock_guard lock(mu_);
  Stmt st(db_, "DELETE FROM deployments WHERE id = ?");
  st.bind(1, id);
  st.step();
}

std::vector<TrainerJobRow> Store::trainer_jobs() {
  std::lock_guard lock(mu_);
  Stmt st(db_,
          (std::string("SELECT ") + kResourceColumns + ", last_base FROM trainer_jobs ORDER BY id")
              .c_str());
  std::vector<TrainerJobRow> out;
  while (st.step()) {
    TrainerJobRow r;
    read_resource(st, r);
    r.last_base = st.text(8);
    out.push_back(std::move(r));
  }
  return out;
}

void Store::put(const TrainerJobRow& r) {
  std::lock_guard lock(mu_);
  Stmt st(db_, (std::string("INSERT OR REPLACE INTO trainer_jobs(") + kResourceColumns +
                ", last_base) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)")
                   .c_str());
  bind_resource(st, r);
  st.bind(9, r.last_base);
  st.step();
}

void Store::erase_trainer_job(const std::string& id) {
  std::lock_guard lock(mu_);
  Stmt st(db_, "DELETE FROM trainer_jobs WHERE id = ?");
  st.bind(1, id);
  st.step();
}

std::vector<std::pair<std::string, std::string>> Store::records(const std::string& kind) {
  std::lock_guard lock(mu_);
  Stmt st(db_, "SELECT id, body FROM records WHERE kind = ? ORDER BY id");
  st.bind(1, kind);
  std::vector<std::pair<std::string, std::string>> out;
  while (st.step()) out.emplace_back(st.text(0), st.text(1));
  return out;
}

void Store::put_record(const std::string& kind, const std::string& id, const std::string& json) {
  std::lock_guard lock(mu_);
  Stmt st(db_, "INSERT OR REPLACE INTO records(kind, id, body) VALUES(?, ?, ?)");
  st.bind(1, kind).bind(2, id).bind(3, json);
  st.step();
}

void Store::erase_record(const std::string& kind, const std::string& id) {
  std::lock_guard lock(mu_);
  Stmt st(db_, "DELETE FROM records WHERE kind = ? AND id = ?");
  st.bind(1, kind).bind(2, id);
  st.step();
}

}  // namespace flare::emulator
