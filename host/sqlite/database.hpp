#pragma once
// One SQLite connection for flare's own files (the release registry): WAL
// journal, a busy timeout so that concurrent writers wait instead of failing,
// and statements with bound parameters only (the last few prepared ones kept for reuse).
//
//   flare::sqlite::Database db(path, {});
//   db.exec("CREATE TABLE IF NOT EXISTS t(a TEXT)");
//   auto r = db.query("SELECT a FROM t WHERE a = ?", {Value::text("x")});
//
// Errors are flare::Error with code "sqlite_busy" (retryable: the busy timeout
// ran out), "sqlite_constraint" (a UNIQUE, NOT NULL, ... check) or "sqlite";
// the message names the file.
#include <list>
#include <string>
#include <utility>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace flare::sqlite {

struct Value {
  enum class Kind { Null, Integer, Real, Text, Blob };
  Kind kind = Kind::Null;
  long long integer = 0;
  double real = 0;
  std::string bytes;  // Text and Blob

  static Value null() { return {}; }
  static Value of_integer(long long v) { return {Kind::Integer, v, 0, {}}; }
  static Value of_real(double v) { return {Kind::Real, 0, v, {}}; }
  static Value text(std::string s) { return {Kind::Text, 0, 0, std::move(s)}; }
  static Value blob(std::string s) { return {Kind::Blob, 0, 0, std::move(s)}; }
};

struct Result {
  std::vector<std::string> columns;
  std::vector<std::vector<Value>> rows;
  long long changes = 0;            // rows changed by an INSERT, UPDATE or DELETE
  long long last_insert_rowid = 0;  // of this connection
};

struct OpenOptions {
  int busy_timeout_ms = 10000;
  bool wal = true;
  bool readonly = false;     // also: the file must exist
  int kept_statements = 16;  // prepared statements kept for reuse (0: each query prepares)
};

class Database {
 public:
  Database(const std::string& path, const OpenOptions& options);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Runs one or more statements without parameters (schema, BEGIN, COMMIT).
  void exec(const std::string& sql);
  // Runs one statement with `params` bound to its ?s in order.
  Result query(const std::string& sql, const std::vector<Value>& params = {});
  // Whether a transaction is open (BEGIN without its COMMIT or ROLLBACK yet).
  bool in_transaction() const;
  void close();
  bool is_open() const { return db_ != nullptr; }
  const std::string& path() const { return path_; }

 private:
  [[noreturn]] void fail(int rc, const std::string& what) const;
  void require_open() const;
  void enter_wal(int busy_timeout_ms);
  // A prepared statement for sql: from the cache (reset, bindings cleared) or newly prepared.
  sqlite3_stmt* prepared(const std::string& sql);
  sqlite3* db_ = nullptr;
  // The most recently used statements first; re-preparing costs about as much as a small
  // INSERT runs, and the gateway's log ingestion repeats a few statements per line.
  std::list<std::pair<std::string, sqlite3_stmt*>> statements_;
  std::string path_;
  size_t kept_statements_;
};

// The SQLite library's version string ("3.40.1"); opens the library.
std::string library_version();

}  // namespace flare::sqlite
