#include <doctest/doctest.h>

#include <stdexcept>

#include "lua_eval.hpp"
#include "runtime/error.hpp"

namespace {

int destructors_run = 0;
struct CountsDestruction {
  ~CountsDestruction() { destructors_run++; }
};

int throws_std(lua_State*) {
  throw std::runtime_error("disk on fire");
}
int throws_flare(lua_State*) {
  throw flare::Error("http_503", "deployment scaled to zero", 503, true, "req-7");
}
int raises_lua_error_over_cpp_frame(lua_State* L) {
  CountsDestruction guard;
  return luaL_error(L, "raised with a C++ object alive");
}
int calls_back_into_lua(lua_State* L) {
  CountsDestruction guard;
  lua_pushvalue(L, 1);
  lua_call(L, 0, 0);  // the Lua function errors: the error unwinds this frame
  return 0;
}

void register_fn(flare::lua::Host& h, const char* name, lua_CFunction f) {
  lua_pushcfunction(h.state(), f);
  lua_setglobal(h.state(), name);
}

}  // namespace

TEST_CASE("a C++ exception thrown by a binding becomes a Lua error with its message") {
  flare::lua::Host h;
  register_fn(h, "throws_std", throws_std);
  CHECK(eval(h, "local ok, e = pcall(throws_std); assert(not ok); result = e") == "");
  CHECK(global_string(h, "result") == "disk on fire");
}

TEST_CASE("flare::Error becomes a structured error table") {
  flare::lua::Host h;
  register_fn(h, "throws_flare", throws_flare);
  CHECK(eval(h, R"(
    local ok, e = pcall(throws_flare)
    assert(not ok and type(e) == "table")
    assert(e.code == "http_503", e.code)
    assert(e.status == 503 and e.retryable == true and e.request_id == "req-7")
    result = tostring(e))") == "");
  CHECK(global_string(h, "result") == "http_503: deployment scaled to zero (HTTP 503)");
}

TEST_CASE("a Lua error unwinding through C++ frames runs their destructors") {
  flare::lua::Host h;
  register_fn(h, "raises", raises_lua_error_over_cpp_frame);
  register_fn(h, "calls_back", calls_back_into_lua);
  destructors_run = 0;
  CHECK(eval(h, "assert(not pcall(raises))") == "");
  CHECK(destructors_run == 1);
  CHECK(eval(h,
             "local ok, e = pcall(calls_back, function() error('inner') end)\n"
             "assert(not ok and e:find('inner'))") == "");
  CHECK(destructors_run == 2);
}

TEST_CASE("an uncaught error keeps its text") {
  flare::lua::Host h;
  CHECK(eval(h, "error('plain failure', 0)") == "plain failure");
  CHECK(eval(h, "flare.error{code='bad_option', message='unknown option foo'}") ==
        "bad_option: unknown option foo");
}
