-- luacheck over stdlib/, scripts/ and tests/ (ctest: lua_style). Width as in .clang-format.
std = "luajit"
max_line_length = 100
-- `flare` is the table the host sets before any script or module runs.
read_globals = {"flare"}
-- Methods keep `self` for a uniform call syntax even when they do not use it.
self = false

-- Specs run under flare.test's runner, which gives them these names.
stds.flare_test = {
  read_globals = {
    "describe", "context", "it", "pending", "before_each", "after_each",
    assert = {fields = {
      "equal", "equals", "same", "truthy", "falsy", "is_true", "is_false", "is_nil", "not_nil",
      "near", "matches", "has_error", "error_matches",
    }},
  },
}
files["tests"] = {std = "+flare_test"}
