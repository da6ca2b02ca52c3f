// host/sqlite: statements with bound values, the error codes a caller acts on, and two
// connections to one WAL file (a writer holding the lock past the other's busy timeout);
// kept prepared statements run again with fresh bindings.
#include "sqlite/database.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "runtime/error.hpp"

namespace {

using flare::sqlite::Database;
using flare::sqlite::OpenOptions;
using flare::sqlite::Value;

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/flare-sqlite-test-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

std::string error_code_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const flare::Error& e) {
    return e.code;
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("binds and reads back every kind of value") {
  TempDir dir;
  Database db(dir.path + "/a.sqlite", {});
  db.exec("CREATE TABLE t(a, b, c, d, e)");
  auto ins =
      db.query("INSERT INTO t VALUES(?, ?, ?, ?, ?)",
               {Value::of_integer(9007199254740993LL), Value::of_real(0.25),
                Value::text(std::string("x\0y", 3)), Value::blob("\x01\x02"), Value::null()});
  CHECK(ins.changes == 1);
  CHECK(ins.last_insert_rowid == 1);
  auto r = db.query("SELECT a, b, c, d, e FROM t");
  REQUIRE(r.rows.size() == 1);
  CHECK(r.columns == std::vector<std::string>{"a", "b", "c", "d", "e"});
  CHECK(r.rows[0][0].kind == Value::Kind::Integer);
  CHECK(r.rows[0][0].integer == 9007199254740993LL);
  CHECK(r.rows[0][1].real == 0.25);
  CHECK(r.rows[0][2].bytes == std::string("x\0y", 3));
  CHECK(r.rows[0][3].kind == Value::Kind::Blob);
  CHECK(r.rows[0][3].bytes == "\x01\x02");
  CHECK(r.rows[0][4].kind == Value::Kind::Null);
  CHECK(db.query("PRAGMA journal_mode").rows[0][0].bytes == "wal");
}

TEST_CASE("names the error a caller acts on") {
  TempDir dir;
  Database db(dir.path + "/b.sqlite", {});
  db.exec("CREATE TABLE t(id TEXT PRIMARY KEY)");
  db.query("INSERT INTO t VALUES(?)", {Value::text("a")});
  CHECK(error_code_of([&] { db.query("INSERT INTO t VALUES(?)", {Value::text("a")}); }) ==
        "sqlite_constraint");
  CHECK(error_code_of([&] { db.query("SELEC 1"); }) == "sqlite");
  CHECK(error_code_of([&] { db.query("SELECT ?", {}); }) == "sqlite");
  CHECK(error_code_of([&] { db.query("SELECT 1; SELECT 2"); }) == "sqlite");
  CHECK(error_code_of([&] {
          Database ro(dir.path + "/missing.sqlite", OpenOptions{1000, true, true});
        }) == "sqlite");
  db.close();
  CHECK(error_code_of([&] { db.query("SELECT 1"); }) == "sqlite");
}

TEST_CASE("a second writer waits for the busy timeout, then gets a retryable sqlite_busy") {
  TempDir dir;
  std::string path = dir.path + "/c.sqlite";
  Database a(path, OpenOptions{50, true, false});
  Database b(path, OpenOptions{50, true, false});
  a.exec("CREATE TABLE t(x)");
  a.exec("BEGIN IMMEDIATE");
  CHECK(a.in_transaction());
  a.query("INSERT INTO t VALUES(1)");
  bool retryable = false;
  std::string code;
  try {
    b.exec("BEGIN IMMEDIATE");
  } catch (const flare::Error& e) {
    code = e.code;
    retryable = e.retryable;
  }
  CHECK(code == "sqlite_busy");
  CHECK(retryable);
  // readers see the last commit while the writer holds its transaction (WAL)
  CHECK(b.query("SELECT count(*) FROM t").rows[0][0].integer == 0);
  a.exec("COMMIT");
  CHECK_FALSE(a.in_transaction());
  b.exec("BEGIN IMMEDIATE");
  b.query("INSERT INTO t VALUES(2)");
  b.exec("COMMIT");
  CHECK(a.query("SELECT count(*) FROM t").rows[0][0].integer == 2);
}

TEST_CASE("a statement run again is prepared once and starts afresh") {
  TempDir dir;
  Database db(dir.path + "/c.sqlite", {});
  Database other(dir.path + "/c.sqlite", {});
  db.exec("CREATE TABLE t(id TEXT PRIMARY KEY, n)");
  const std::string insert = "INSERT INTO t(id, n) VALUES(?, ?)";
  db.query(insert, {Value::text("a"), Value::of_integer(1)});
  CHECK(error_code_of([&] {
          db.query(insert, {Value::text("a"), Value::of_integer(2)});
        }) == "sqlite_constraint");
  db.query(insert, {Value::text("b"), Value::null()});
  const std::string select = "SELECT id, n FROM t WHERE id = ?";
  CHECK(db.query(select, {Value::text("a")}).rows[0][1].integer == 1);
  CHECK(db.query(select, {Value::text("b")}).rows[0][1].kind == Value::Kind::Null);
  // the finished SELECT holds no read snapshot: another connection's write is seen
  other.query(insert, {Value::text("c"), Value::of_integer(3)});
  CHECK(db.query(select, {Value::text("c")}).rows[0][1].integer == 3);
  // a schema change re-prepares the kept statement
  db.exec("ALTER TABLE t ADD COLUMN m DEFAULT 7");
  CHECK(db.query("SELECT * FROM t WHERE id = ?", {Value::text("a")}).columns.size() == 3);
  db.query("UPDATE t SET m = 8 WHERE id = 'a'");
  CHECK(db.query("SELECT * FROM t WHERE id = ?", {Value::text("a")}).rows[0][2].integer == 8);
  // more statements than are kept: each still runs its own SQL
  for (int i = 0; i < 40; i++) {
    auto r = db.query("SELECT ? + " + std::to_string(i), {Value::of_integer(i % 20)});
    CHECK(r.rows[0][0].integer == i % 20 + i);
  }
  db.exec("BEGIN IMMEDIATE");
  db.query(insert, {Value::text("d"), Value::of_integer(4)});
  db.exec("COMMIT");
  CHECK(other.query("SELECT count(*) FROM t").rows[0][0].integer == 4);
}

TEST_CASE("connections opening one new file at once all enter WAL mode") {
  // The switch to WAL may be refused as busy without the busy handler: open retries it.
  TempDir dir;
  for (int round = 0; round < 20; ++round) {
    std::string path = dir.path + "/race" + std::to_string(round) + ".sqlite";
    std::atomic<int> ready{0}, failed{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 6; ++t) {
      threads.emplace_back([&] {
        ++ready;
        while (ready.load() < 6) {
        }
        try {
          Database db(path, OpenOptions{});
          if (db.query("PRAGMA journal_mode").rows.at(0).at(0).bytes != "wal") ++failed;
        } catch (const flare::Error&) {
          ++failed;
        }
      });
    }
    for (auto& th : threads) th.join();
    CHECK(failed.load() == 0);
  }
}
