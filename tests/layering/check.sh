#!/usr/bin/env bash
# The layering rule, checked on every #include of the product's C++ sources:
#   app/        the program (top layer): may use everything below, but no Lua header
#   bindings/   the only code that touches the Lua C API; may not use app/
#   emulator/   may use host/, never bindings/ or app/
#   host/       the C++ core: only host/ and system headers
# A quoted include is resolved the way the build resolves it (the including
# file's directory, the source root, host/, bindings/, app/); the folder it
# resolves into is its layer. Lua headers are recognised by name.
#   tests/layering/check.sh [SOURCE_ROOT]    exit 1 and one line per violation
set -uo pipefail
root="$(cd "${1:-$(dirname "$0")/../..}" && pwd)"
cd "$root" || exit 2

lua_header_re='(^|/)(lua\.h|lauxlib\.h|lualib\.h|luajit\.h|lua\.hpp|luaconf\.h)$'
include_re='^[[:space:]]*#[[:space:]]*include[[:space:]]*([<"])([^>"]+)[>"]'
violations=0
report() {  # FILE:LINE MESSAGE
  echo "layering: $1: $2"
  violations=$((violations + 1))
}

layer_of() {  # the top folder a path under the root belongs to
  case "$1" in
    app/*) echo app ;;
    bindings/*) echo bindings ;;
    emulator/*) echo emulator ;;
    host/*) echo host ;;
    *) echo other ;;
  esac
}

resolve() {  # FILE INCLUDE -> the source path it names, or nothing (a system header)
  local dir candidate
  dir=$(dirname "$1")
  for candidate in "$dir/$2" "$2" "host/$2" "bindings/$2" "app/$2"; do
    if [[ -f "$candidate" ]]; then
      candidate=$(realpath -m "$candidate")
      echo "${candidate#"$root"/}"
      return
    fi
  done
}

forbidden() {  # LAYER TARGET_LAYER -> success when LAYER may not include TARGET_LAYER
  case "$1:$2" in
    host:bindings | host:emulator | host:app) return 0 ;;
    emulator:bindings | emulator:app) return 0 ;;
    bindings:app) return 0 ;;
  esac
  return 1
}

checked=0
while IFS= read -r file; do
  checked=$((checked + 1))
  layer=$(layer_of "$file")
  while IFS=: read -r line text; do
    [[ "$text" =~ $include_re ]] || continue
    quote=${BASH_REMATCH[1]} header=${BASH_REMATCH[2]}
    if [[ "$layer" != bindings && "$header" =~ $lua_header_re ]]; then
      report "$file:$line" "$layer/ includes the Lua header <$header>; only bindings/ may use the Lua C API"
      continue
    fi
    [[ "$quote" == '"' ]] || continue
    target=$(resolve "$file" "$header")
    [[ -n "$target" ]] || continue
    target_layer=$(layer_of "$target")
    if forbidden "$layer" "$target_layer"; then
      report "$file:$line" "$layer/ includes \"$header\" ($target), a header of $target_layer/"
    fi
  done < <(grep -nE '^[[:space:]]*#[[:space:]]*include' "$file")
done < <(find app bindings emulator host -type f \( -name '*.cpp' -o -name '*.hpp' -o -name '*.c' -o -name '*.h' \) 2>/dev/null | sort)

if [[ $checked -eq 0 ]]; then
  echo "layering: no sources found under $root" >&2
  exit 2
fi
if [[ $violations -gt 0 ]]; then
  echo "layering: $violations violation(s) in $checked files"
  exit 1
fi
echo "layering: $checked files, no violation"
