// flare.sqlite: a SQLite database file for flare's own records (the release registry).
//   sqlite.open(path, {busy_timeout_ms = 10000, wal = true, readonly = false,
//               kept_statements = 16}) -> db     (prepared statements kept for reuse)
//   db:exec(sql)                       one or more statements, no parameters
//   db:query(sql, params) -> rows, changes, last_insert_rowid
//       one statement; params is a list bound to its ?s (nil holes and flare.json.null
//       bind NULL; params.n counts trailing nils); rows is a list of {column = value}
//       (NULL columns absent)
//   db:in_transaction() -> bool        db:close()        db:path() -> string
//   sqlite.version() -> "3.40.1"
// Errors carry code "sqlite_busy" (retryable), "sqlite_constraint" or "sqlite". In a sandbox
// (flare run --sandbox) the path must be under its granted folders (sandbox_denied otherwise).
#include <cmath>
#include <lua.hpp>
#include <memory>
#include <string>
#include <vector>

#include "json_convert.hpp"
#include "lua_support.hpp"
#include "module.hpp"
#include "sandbox_policy.hpp"
#include "sqlite/database.hpp"

namespace flare::lua {
namespace {

const char* const kDbMeta = "flare.sqlite.db";

struct DbBox {
  std::unique_ptr<flare::sqlite::Database> db;
};

flare::sqlite::Database& check_db(lua_State* L, const char* who) {
  auto& box = check_udata<DbBox>(L, 1, kDbMeta, who);
  if (!box.db || !box.db->is_open()) raise_invalid(who, "the database is closed");
  return *box.db;
}

int l_open(lua_State* L) {
  const char* who = "flare.sqlite.open";
  std::string path(check_string(L, 1, who, "path"));
  if (path.empty()) raise_invalid(who, "argument 'path' must not be empty");
  flare::sqlite::OpenOptions opts;
  {
    Options o(L, 2, who, false);
    opts.busy_timeout_ms = static_cast<int>(o.integer("busy_timeout_ms", 10000, 0, 3600000));
    opts.wal = o.boolean("wal", true);
    opts.readonly = o.boolean("readonly", false);
    opts.kept_statements = static_cast<int>(o.integer("kept_statements", 16, 0, 1000));
    o.finish();
  }
  // In a sandbox the file must lie under its granted folders, as flare.fs's.
  flare::sandbox::check_file(path, !opts.readonly);
  auto& box = push_udata<DbBox>(L, kDbMeta);
  box.db = std::make_unique<flare::sqlite::Database>(path, opts);
  return 1;
}

int l_exec(lua_State* L) {
  auto& db = check_db(L, "db:exec");
  db.exec(std::string(check_string(L, 2, "db:exec", "sql")));
  return 0;
}

flare::sqlite::Value read_param(lua_State* L, int idx, int position) {
  using flare::sqlite::Value;
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      return Value::null();
    case LUA_TBOOLEAN:
      return Value::of_integer(lua_toboolean(L, idx) ? 1 : 0);
    case LUA_TNUMBER: {
      double d = lua_tonumber(L, idx);
      if (std::floor(d) == d && std::fabs(d) < 9007199254740992.0) {
        return Value::of_integer(static_cast<long long>(d));
      }
      return Value::of_real(d);
    }
    case LUA_TSTRING: {
      size_t len;
      const char* s = lua_tolstring(L, idx, &len);
      return Value::text(std::string(s, len));
    }
    default:
      if (is_json_null(L, idx)) return Value::null();
      raise_invalid("db:query", "argument 'params[" + std::to_string(position) +
                                    "]' must be a string, number, boolean or nil, got " +
                                    type_of(L, idx));
  }
}

void push_value(lua_State* L, const flare::sqlite::Value& v) {
  using K = flare::sqlite::Value::Kind;
  switch (v.kind) {
    case K::Null:
      lua_pushnil(L);
      break;
    case K::Integer:
      lua_pushnumber(L, static_cast<lua_Number>(v.integer));
      break;
    case K::Real:
      lua_pushnumber(L, v.real);
      break;
    case K::Text:
    case K::Blob:
      lua_pushlstring(L, v.bytes.data(), v.bytes.size());
      break;
  }
}

int l_query(lua_State* L) {
  const char* who = "db:query";
  auto& db = check_db(L, who);
  std::string sql(check_string(L, 2, who, "sql"));
  std::vector<flare::sqlite::Value> params;
  if (!lua_isnoneornil(L, 3)) {
    check_table(L, 3, who, "params");
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, 3) != 0) {
      lua_pop(L, 1);
      if (lua_type(L, -1) == LUA_TSTRING && std::string_view(lua_tostring(L, -1)) == "n") continue;
      if (lua_type(L, -1) != LUA_TNUMBER) {
        raise_invalid(who, "argument 'params' must be a list, got key " + type_of(L, -1));
      }
      double k = lua_tonumber(L, -1);
      if (k >= 1 && std::floor(k) == k && k > n) n = static_cast<int>(k);
    }
    // {n = N, ...} (as table.pack makes) counts trailing nils.
    lua_getfield(L, 3, "n");
    if (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) > n) {
      n = static_cast<int>(lua_tonumber(L, -1));
    }
    lua_pop(L, 1);
    for (int i = 1; i <= n; i++) {
      lua_rawgeti(L, 3, i);
      params.push_back(read_param(L, -1, i));
      lua_pop(L, 1);
    }
  }
  flare::sqlite::Result r = db.query(sql, params);
  lua_createtable(L, static_cast<int>(r.rows.size()), 0);
  for (size_t i = 0; i < r.rows.size(); i++) {
    lua_createtable(L, 0, static_cast<int>(r.columns.size()));
    for (size_t c = 0; c < r.columns.size(); c++) {
      if (r.rows[i][c].kind == flare::sqlite::Value::Kind::Null) continue;
      push_value(L, r.rows[i][c]);
      lua_setfield(L, -2, r.columns[c].c_str());
    }
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
  lua_pushnumber(L, static_cast<lua_Number>(r.changes));
  lua_pushnumber(L, static_cast<lua_Number>(r.last_insert_rowid));
  return 3;
}

int l_in_transaction(lua_State* L) {
  lua_pushboolean(L, check_db(L, "db:in_transaction").in_transaction());
  return 1;
}

int l_path(lua_State* L) {
  auto& box = check_udata<DbBox>(L, 1, kDbMeta, "db:path");
  lua_pushstring(L, box.db ? box.db->path().c_str() : "");
  return 1;
}

int l_close(lua_State* L) {
  auto& box = check_udata<DbBox>(L, 1, kDbMeta, "db:close");
  box.db.reset();
  return 0;
}

int l_version(lua_State* L) {
  lua_pushstring(L, flare::sqlite::library_version().c_str());
  return 1;
}

int open_sqlite(lua_State* L) {
  const luaL_Reg methods[] = {
      {"exec", l_exec}, {"query", l_query}, {"in_transaction", l_in_transaction},
      {"path", l_path}, {"close", l_close}, {nullptr, nullptr},
  };
  register_class(L, kDbMeta, methods, gc_udata<DbBox>);
  const luaL_Reg fns[] = {
      {"open", l_open},
      {"version", l_version},
      {nullptr, nullptr},
  };
  push_functions(L, fns);
  return 1;
}

}  // namespace
}  // namespace flare::lua

FLARE_LUA_MODULE(sqlite, flare::lua::open_sqlite);
