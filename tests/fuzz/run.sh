#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (-fsanitize=fuzzer,address,undefined)
# into build-fuzz/ and runs each for a bounded time (FUZZ_SECONDS each, default
# 22; under 60 s in all). Exits non-zero when a target finds a crash.
#   bash tests/fuzz/run.sh            build + run
#   bash tests/fuzz/run.sh --seeds    also regenerate the committed seed corpus
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$root/build-fuzz"
seconds="${FUZZ_SECONDS:-22}"
mkdir -p "$out/obj"
CXX="${FUZZ_CXX:-clang++}"
flags=(-std=c++20 -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined
       -fno-sanitize-recover=undefined -I"$root/host" -I"$root/tests/fuzz")
libs=(-lzstd -lz -lpthread -ldl)

# Library objects (the delta codec and the runtime parts it uses: files, the
# thread pool, ISA-L opened on first use), rebuilt when their source or any
# header of either directory is newer.
objs=()
newest_header=$(ls -t "$root"/host/delta/*.hpp "$root"/host/runtime/*.hpp | head -1)
for src in "$root"/host/delta/*.cpp "$root"/host/runtime/{shared_library,file_io,thread_pool}.cpp; do
  obj="$out/obj/$(basename "${src%.cpp}").o"
  if [[ ! -f "$obj" || "$src" -nt "$obj" || "$newest_header" -nt "$obj" ]]; then
    "$CXX" "${flags[@]}" -fsanitize=fuzzer-no-link -c "$src" -o "$obj"
  fi
  objs+=("$obj")
done

newest_obj=$(ls -t "${objs[@]}" | head -1)

build() {  # build NAME [extra flags...]
  local name=$1; shift
  local src="$root/tests/fuzz/$name.cpp" bin="$out/$name"
  if [[ ! -x "$bin" || "$src" -nt "$bin" || "$root/tests/fuzz/fuzz_fixture.hpp" -nt "$bin" || "$newest_obj" -nt "$bin" ]]; then
    "$CXX" "${flags[@]}" "$@" "$src" "${objs[@]}" "${libs[@]}" -o "$bin"
  fi
}
build fuzz_delta -fsanitize=fuzzer
build fuzz_safetensors -fsanitize=fuzzer

if [[ "${1:-}" == "--seeds" ]]; then
  build make_seeds
  "$out/make_seeds" "$root/tests/fuzz/seeds"
fi

status=0
for target in delta safetensors; do
  corpus="$out/corpus/$target"
  mkdir -p "$corpus"
  echo "fuzz_$target: ${seconds}s"
  if ! (cd "$out" && "./fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
          -max_len=65536 -print_final_stats=0 "$corpus" "$root/tests/fuzz/seeds/$target" 2>"$out/fuzz_$target.log"); then
    echo "fuzz_$target found a crash; see $out/fuzz_$target.log and $out/crash-*" >&2
    tail -40 "$out/fuzz_$target.log" >&2
    status=1
  else
    grep -E '^#[0-9]+ +DONE' "$out/fuzz_$target.log" || tail -1 "$out/fuzz_$target.log"
  fi
done
exit $status
