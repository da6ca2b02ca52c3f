#include "sqlite/libsqlite.hpp"

#include <type_traits>

#include "runtime/shared_library.hpp"

namespace flare::sqlite {

const LibSqlite& libsqlite() {
  static const LibSqlite api = [] {
    static SharedLibrary lib({"libsqlite3.so.0", "libsqlite3.so"}, "SQLite (libsqlite3)");
    LibSqlite s{};
#define FLARE_SQLITE_FN(field) \
  s.field = lib.function<std::remove_pointer_t<decltype(s.field)>>("sqlite3_" #field)
    FLARE_SQLITE_FN(open_v2);
    FLARE_SQLITE_FN(close_v2);
    FLARE_SQLITE_FN(errmsg);
    FLARE_SQLITE_FN(extended_errcode);
    FLARE_SQLITE_FN(busy_timeout);
    FLARE_SQLITE_FN(exec);
    FLARE_SQLITE_FN(free);
    FLARE_SQLITE_FN(prepare_v2);
    FLARE_SQLITE_FN(finalize);
    FLARE_SQLITE_FN(step);
    FLARE_SQLITE_FN(reset);
    FLARE_SQLITE_FN(clear_bindings);
    FLARE_SQLITE_FN(bind_parameter_count);
    FLARE_SQLITE_FN(bind_null);
    FLARE_SQLITE_FN(bind_int64);
    FLARE_SQLITE_FN(bind_double);
    FLARE_SQLITE_FN(bind_text);
    FLARE_SQLITE_FN(bind_blob);
    FLARE_SQLITE_FN(column_count);
    FLARE_SQLITE_FN(column_name);
    FLARE_SQLITE_FN(column_type);
    FLARE_SQLITE_FN(column_int64);
    FLARE_SQLITE_FN(column_double);
    FLARE_SQLITE_FN(column_blob);
    FLARE_SQLITE_FN(column_text);
    FLARE_SQLITE_FN(column_bytes);
    FLARE_SQLITE_FN(changes);
    FLARE_SQLITE_FN(last_insert_rowid);
    FLARE_SQLITE_FN(get_autocommit);
    FLARE_SQLITE_FN(libversion);
#undef FLARE_SQLITE_FN
    return s;
  }();
  return api;
}

}  // namespace flare::sqlite
