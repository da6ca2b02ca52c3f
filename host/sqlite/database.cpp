#include "sqlite/database.hpp"

#include <algorithm>
#include <chrono>
#include <thread>

#include "runtime/error.hpp"
#include "sqlite/libsqlite.hpp"

namespace flare::sqlite {
namespace {

// Resets a cached statement when the query that used it ends, however it ends.
class Reset {
 public:
  explicit Reset(sqlite3_stmt* st) : st_(st) {}
  ~Reset() {
    libsqlite().reset(st_);
    libsqlite().clear_bindings(st_);
  }
  Reset(const Reset&) = delete;
  Reset& operator=(const Reset&) = delete;

 private:
  sqlite3_stmt* st_;
};

Value column_value(sqlite3_stmt* st, int col) {
  const auto& s = libsqlite();
  switch (s.column_type(st, col)) {
    case SQLITE_INTEGER:
      return Value::of_integer(s.column_int64(st, col));
    case SQLITE_FLOAT:
      return Value::of_real(s.column_double(st, col));
    case SQLITE_TEXT: {
      auto* p = reinterpret_cast<const char*>(s.column_text(st, col));
      return Value::text(std::string(p, s.column_bytes(st, col)));
    }
    case SQLITE_BLOB: {
      auto* p = static_cast<const char*>(s.column_blob(st, col));
      int n = s.column_bytes(st, col);
      return Value::blob(p ? std::string(p, n) : std::string());
    }
    default:
      return Value::null();
  }
}

}  // namespace

Database::Database(const std::string& path, const OpenOptions& options)
    : path_(path), kept_statements_(static_cast<size_t>(std::max(options.kept_statements, 0))) {
  const auto& s = libsqlite();
  int flags = options.readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  int rc = s.open_v2(path.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db_ ? s.errmsg(db_) : "out of memory";
    s.close_v2(db_);
    db_ = nullptr;
    throw Error("sqlite", "cannot open database " + path + ": " + msg);
  }
  s.busy_timeout(db_, options.busy_timeout_ms);
  try {
    if (options.wal && !options.readonly) enter_wal(options.busy_timeout_ms);
    exec("PRAGMA foreign_keys=ON");
  } catch (...) {
    close();
    throw;
  }
}

// Two processes creating one file at once: the switch to WAL can be refused as busy at once,
// without SQLite's busy handler (waiting could deadlock there), so it is retried here for as
// long as the busy timeout allows.
void Database::enter_wal(int busy_timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(busy_timeout_ms);
  for (int pause_ms = 2;; pause_ms = std::min(pause_ms * 2, 50)) {
    try {
      exec("PRAGMA journal_mode=WAL");
      return;
    } catch (const Error& e) {
      if (e.code != "sqlite_busy" || std::chrono::steady_clock::now() >= deadline) throw;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
  }
}

Database::~Database() {
  close();
}

void Database::close() {
  for (auto& [sql, st] : statements_) libsqlite().finalize(st);
  statements_.clear();
  if (db_) libsqlite().close_v2(db_);
  db_ = nullptr;
}

void Database::require_open() const {
  if (!db_) throw Error("sqlite", "database " + path_ + " is closed");
}

void Database::fail(int rc, const std::string& what) const {
  int primary = rc & 0xff;
  std::string msg = what + " (" + path_ + "): " + libsqlite().errmsg(db_);
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
    throw Error("sqlite_busy", msg + " (another writer held the database past the busy timeout)", 0,
                true);
  }
  if (primary == SQLITE_CONSTRAINT) throw Error("sqlite_constraint", msg);
  throw Error("sqlite", msg);
}

void Database::exec(const std::string& sql) {
  require_open();
  const auto& s = libsqlite();
  char* err = nullptr;
  int rc = s.exec(db_, sql.c_str(), nullptr, nullptr, &err);
  if (err) s.free(err);
  if (rc != SQLITE_OK) fail(s.extended_errcode(db_), "sqlite");
}

sqlite3_stmt* Database::prepared(const std::string& sql) {
  const auto& s = libsqlite();
  for (auto it = statements_.begin(); it != statements_.end() && kept_statements_ > 0; ++it) {
    if (it->first == sql) {
      statements_.splice(statements_.begin(), statements_, it);
      return it->second;
    }
  }
  sqlite3_stmt* raw = nullptr;
  const char* tail = nullptr;
  int rc = s.prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()), &raw, &tail);
  if (rc != SQLITE_OK) fail(rc, "sqlite prepare");
  if (!raw) throw Error("sqlite", "sqlite (" + path_ + "): no statement in the SQL text");
  while (tail && (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == ';')) ++tail;
  if (tail && *tail) {
    s.finalize(raw);
    throw Error("sqlite", "sqlite (" + path_ + "): query takes one statement; text follows it: " +
                              std::string(tail).substr(0, 40));
  }
  statements_.emplace_front(sql, raw);
  if (statements_.size() > std::max<size_t>(kept_statements_, 1)) {
    s.finalize(statements_.back().second);
    statements_.pop_back();
  }
  return raw;
}

Result Database::query(const std::string& sql, const std::vector<Value>& params) {
  require_open();
  const auto& s = libsqlite();
  sqlite3_stmt* raw = prepared(sql);
  Reset reset(raw);
  int rc;
  int expected = s.bind_parameter_count(raw);
  if (expected != static_cast<int>(params.size())) {
    throw Error("sqlite", "sqlite (" + path_ + "): the statement has " + std::to_string(expected) +
                              " parameters, " + std::to_string(params.size()) + " given");
  }
  for (int i = 0; i < expected; i++) {
    const Value& v = params[i];
    switch (v.kind) {
      case Value::Kind::Null:
        s.bind_null(raw, i + 1);
        break;
      case Value::Kind::Integer:
        s.bind_int64(raw, i + 1, v.integer);
        break;
      case Value::Kind::Real:
        s.bind_double(raw, i + 1, v.real);
        break;
      case Value::Kind::Text:
        s.bind_text(raw, i + 1, v.bytes.data(), static_cast<int>(v.bytes.size()), SQLITE_TRANSIENT);
        break;
      case Value::Kind::Blob:
        s.bind_blob(raw, i + 1, v.bytes.data(), static_cast<int>(v.bytes.size()), SQLITE_TRANSIENT);
        break;
    }
  }
  Result out;
  int ncol = s.column_count(raw);
  for (int c = 0; c < ncol; c++) out.columns.emplace_back(s.column_name(raw, c));
  for (;;) {
    rc = s.step(raw);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) fail(s.extended_errcode(db_), "sqlite");
    std::vector<Value> row;
    row.reserve(ncol);
    for (int c = 0; c < ncol; c++) row.push_back(column_value(raw, c));
    out.rows.push_back(std::move(row));
  }
  out.changes = s.changes(db_);
  out.last_insert_rowid = s.last_insert_rowid(db_);
  return out;
}

bool Database::in_transaction() const {
  return db_ && libsqlite().get_autocommit(db_) == 0;
}

std::string library_version() {
  return libsqlite().libversion();
}

}  // namespace flare::sqlite
