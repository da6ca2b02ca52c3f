#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (-fsanitize=fuzzer,address,undefined)
# into build-fuzz/ and runs each for a bounded time: FLARE_FUZZ_SECONDS each
# (default 20; five targets, under two minutes in all). Exits non-zero when a
# target finds a crash, and leaves the input that found it in build-fuzz/.
#   bash tests/fuzz/run.sh                  build + run every target
#   bash tests/fuzz/run.sh json http1       build + run the ones named
#   bash tests/fuzz/run.sh --seeds          also regenerate the generated seeds
#   FLARE_FUZZ_SECONDS=600 bash tests/fuzz/run.sh json   a longer run
# Targets: delta (the delta decoder), safetensors (the header parser), json
# (flare.json.decode through the Lua API), completion (the completions codec),
# http1 (the HTTP/1.1 response parser).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$root/build-fuzz"
seconds="${FLARE_FUZZ_SECONDS:-${FUZZ_SECONDS:-20}}"
mkdir -p "$out/obj"
CXX="${FUZZ_CXX:-clang++}"
flags=(-std=c++20 -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined
       -fno-sanitize-recover=undefined -I"$root/host" -I"$root/bindings" -I"$root/tests/fuzz"
       $(pkg-config --cflags luajit))

# compile SRC...: objects (instrumented for coverage) in build-fuzz/obj, rebuilt
# when their source or a header of host/, bindings/ or tests/fuzz/ is newer.
newest_header=$(ls -t "$root"/host/*/*.hpp "$root"/bindings/*.hpp "$root"/tests/fuzz/*.hpp | head -1)
objs=()
compile() {
  objs=()
  local src obj
  for src in "$@"; do
    obj="$out/obj/$(basename "$(dirname "$src")")_$(basename "${src%.cpp}").o"
    if [[ ! -f "$obj" || "$src" -nt "$obj" || "$newest_header" -nt "$obj" ]]; then
      "$CXX" "${flags[@]}" -fsanitize=fuzzer-no-link -c "$src" -o "$obj"
    fi
    objs+=("$obj")
  done
}

# link NAME LIBS... (uses $objs): build-fuzz/fuzz_NAME, relinked when anything is newer.
link() {
  local name=$1; shift
  local src="$root/tests/fuzz/fuzz_$name.cpp" bin="$out/fuzz_$name" newer=0 o
  for o in "$src" "$newest_header" "${objs[@]}"; do [[ "$o" -nt "$bin" ]] && newer=1; done
  if [[ ! -x "$bin" || $newer == 1 ]]; then
    "$CXX" "${flags[@]}" -fsanitize=fuzzer "$src" "${objs[@]}" "$@" -o "$bin"
  fi
}

# host/text without the simdjson module (a library of its own, see simdjson_abi.h).
text_sources() { ls "$root"/host/text/*.cpp | grep -v simdjson_module; }

build_target() {
  case "$1" in
    delta | safetensors)
      compile "$root"/host/delta/*.cpp "$root"/host/runtime/{shared_library,file_io,thread_pool}.cpp
      link "$1" -lzstd -lz -lpthread -ldl ;;
    json)
      # libflare-simdjson.so beside the target, where json_parse.cpp opens it: simdjson
      # parses and the exact parser decides what it refuses, as in the flare program.
      local module="$out/libflare-simdjson.so" msrc="$root/host/text/simdjson_module.cpp"
      if [[ ! -f "$module" || "$msrc" -nt "$module" ]]; then
        "$CXX" "${flags[@]}" -fsanitize=fuzzer-no-link -fPIC -shared "$msrc" -lsimdjson -o "$module"
      fi
      compile "$root"/bindings/{json,json_convert,lua_support,module_registry,error_boundary}.cpp \
        $(text_sources) "$root"/host/runtime/shared_library.cpp
      link json $(pkg-config --libs luajit) -ldl ;;
    completion)
      compile "$root"/host/fireworks/completion_codec.cpp $(text_sources) \
        "$root"/host/runtime/shared_library.cpp
      link completion -ldl ;;
    http1)
      compile "$root"/host/net/http1_parser.cpp
      link http1 ;;
    *) echo "unknown fuzz target '$1' (delta safetensors json completion http1)" >&2; exit 2 ;;
  esac
}

targets=()
regen=0
for a in "$@"; do
  if [[ $a == --seeds ]]; then regen=1; else targets+=("$a"); fi
done
[[ ${#targets[@]} -gt 0 ]] || targets=(delta safetensors json completion http1)

if [[ $regen == 1 ]]; then
  compile "$root"/host/delta/*.cpp "$root"/host/runtime/{shared_library,file_io,thread_pool}.cpp
  "$CXX" "${flags[@]}" "$root/tests/fuzz/make_seeds.cpp" "${objs[@]}" -lzstd -lz -lpthread -ldl \
    -o "$out/make_seeds"
  "$out/make_seeds" "$root/tests/fuzz/seeds"
fi

status=0
for target in "${targets[@]}"; do
  build_target "$target"
  corpus="$out/corpus/$target"
  mkdir -p "$corpus"
  max_len=65536
  [[ $target == delta || $target == safetensors ]] || max_len=16384
  echo "fuzz_$target: ${seconds}s"
  if ! (cd "$out" && "./fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
          -max_len=$max_len -print_final_stats=1 "$corpus" "$root/tests/fuzz/seeds/$target" \
          2>"$out/fuzz_$target.log"); then
    echo "fuzz_$target found a crash; see $out/fuzz_$target.log and $out/crash-*" >&2
    tail -40 "$out/fuzz_$target.log" >&2
    status=1
  else
    grep -E '^#[0-9]+ +DONE|stat::number_of_executed_units' "$out/fuzz_$target.log" ||
      tail -1 "$out/fuzz_$target.log"
  fi
done
exit $status
