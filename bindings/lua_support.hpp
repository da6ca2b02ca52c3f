#pragma once
// The one toolkit every binding uses to read its arguments and to wrap C++
// objects (in the spirit of LÖVE's luax_* helpers).
//
// Misuse of any flare.* function raises one structured error: a flare::Error
// with code "invalid_argument", which the error boundary turns into the Lua
// table {code=, message=, retryable=false}. The message starts with the
// function's name and names the argument or option:
//   flare.http.request: option 'timeout_s' must be a number, got string
//   flare.fs.read_file: argument 'path' must be a string, got number
//   flare.json.encode: unknown option 'prety' (did you mean 'pretty'?)
#include <cmath>
#include <limits>
#include <lua.hpp>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace flare::lua {

// Throws flare::Error("invalid_argument", who + ": " + message).
[[noreturn]] void raise_invalid(std::string_view who, std::string_view message);

// The candidate closest to name (a name it starts with, or within an edit
// distance of max(2, |name| / 3)), or "" when none is close.
std::string did_you_mean(std::string_view name, const std::vector<std::string_view>& candidates);

// "number", "no value" for an absent argument, the class name for flare's own userdata.
std::string type_of(lua_State* L, int idx);

// --- positional arguments ----------------------------------------------------------------
// `name` is the parameter's name in the function's documentation ("path", "opts").

std::string_view check_string(lua_State* L, int idx, const char* who, const char* name);
double check_number(lua_State* L, int idx, const char* who, const char* name);
long long check_integer(lua_State* L, int idx, const char* who, const char* name,
                        long long min = std::numeric_limits<int>::min(),
                        long long max = std::numeric_limits<int>::max());
void check_table(lua_State* L, int idx, const char* who, const char* name);
void check_function(lua_State* L, int idx, const char* who, const char* name);
// nil or absent gives nullopt; anything else must be a number.
std::optional<double> opt_number(lua_State* L, int idx, const char* who, const char* name);

// A list of integers in [min, max] (token ids, status codes) at idx; `what`
// names it in errors, followed by [what_index] when that is > 0 ("prompts[3]").
std::vector<int> check_int_list(lua_State* L, int idx, const char* who, const char* what,
                                int what_index = 0, int min = 0,
                                int max = std::numeric_limits<int>::max());

// --- option tables -----------------------------------------------------------------------
// Reads the options table at idx. Every getter marks its key as known;
// finish() then rejects any other key with a did-you-mean, so a reader must
// call finish() before it acts. Absent (nil or no value) tables read as empty
// unless `required`.
//
//   Options o(L, 1, "flare.http.request");
//   std::string url = o.required_string("url");
//   double timeout = o.number("timeout_s", 30, 0);
//   o.finish();
class Options {
 public:
  Options(lua_State* L, int idx, const char* who, bool required = true);

  std::optional<std::string> opt_string(const char* key);
  std::string string(const char* key, std::string fallback);
  std::string required_string(const char* key);
  // min and max bound the value (inclusive); integers must also be whole numbers.
  std::optional<double> opt_number(const char* key, double min = -HUGE_VAL, double max = HUGE_VAL);
  double number(const char* key, double fallback, double min, double max = HUGE_VAL);
  std::optional<long long> opt_integer(const char* key,
                                       long long min = std::numeric_limits<int>::min(),
                                       long long max = std::numeric_limits<int>::max());
  long long integer(const char* key, long long fallback, long long min,
                    long long max = std::numeric_limits<int>::max());
  std::optional<bool> opt_boolean(const char* key);
  bool boolean(const char* key, bool fallback);
  // A list of strings, or one string.
  std::optional<std::vector<std::string>> strings(const char* key);
  // A table of string keys to string values (numbers are converted).
  std::optional<std::vector<std::pair<std::string, std::string>>> string_map(const char* key);
  // Pushes the field when it is a table (or a function) and returns true;
  // pushes nothing and returns false when it is nil.
  bool push_table(const char* key);
  bool push_function(const char* key);
  // Pushes the field whatever its type (nil included); for values read by
  // their own rules.
  void push_any(const char* key);

  // Raises "option 'key' ..." for a value read by the caller's own rules.
  [[noreturn]] void invalid(const char* key, std::string_view message) const;
  // Raises "option 'key' is required (what)", or, when the table holds a
  // misspelling of key, "unknown option 'kye' (did you mean 'key'?)".
  [[noreturn]] void missing(const char* key, std::string_view what) const;

  void finish();

 private:
  // Pushes the field and records the key; returns its Lua type.
  int field(const char* key);
  // push_table and push_function: the field of Lua type `type`, or nothing when nil.
  bool push_typed(const char* key, int type, const char* expected);
  [[noreturn]] void wrong_type(const char* key, const char* expected) const;

  lua_State* L_;
  int idx_;
  const char* who_;
  std::vector<const char*> known_;
};

// --- userdata ----------------------------------------------------------------------------
// A class is a metatable named by its Lua class name (e.g. "flare.http.handle");
// check_udata names it when the wrong value is passed.

// Creates the metatable `meta`: entries of `methods` named __x are
// metamethods, the others are reached through __index; __gc is set when given.
void register_class(lua_State* L, const char* meta, const luaL_Reg* methods,
                    lua_CFunction gc = nullptr);

// Pushes a new table holding `functions` (a module's table).
void push_functions(lua_State* L, const luaL_Reg* functions);

// Pushes a new list of the strings (any bytes).
void push_strings(lua_State* L, const std::vector<std::string>& items);

// Constructs a T in a new userdata with the class's metatable and pushes it.
template <typename T, typename... Args>
T& push_udata(lua_State* L, const char* meta, Args&&... args) {
  void* mem = lua_newuserdata(L, sizeof(T));
  T* obj = new (mem) T(std::forward<Args>(args)...);
  luaL_getmetatable(L, meta);
  lua_setmetatable(L, -2);
  return *obj;
}

// The T at idx, or nullptr when idx holds anything else.
template <typename T>
T* test_udata(lua_State* L, int idx, const char* meta) {
  return static_cast<T*>(luaL_testudata(L, idx, meta));
}

[[noreturn]] void wrong_udata(lua_State* L, int idx, const char* meta, const char* who,
                              const char* name);

// The T at idx; any other value raises "argument 'name' must be a <meta>".
template <typename T>
T& check_udata(lua_State* L, int idx, const char* meta, const char* who,
               const char* name = "self") {
  T* p = test_udata<T>(L, idx, meta);
  if (!p) wrong_udata(L, idx, meta, who, name);
  return *p;
}

// A __gc metamethod that runs T's destructor.
template <typename T>
int gc_udata(lua_State* L) {
  static_cast<T*>(lua_touserdata(L, 1))->~T();
  return 0;
}

}  // namespace flare::lua
