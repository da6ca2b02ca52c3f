#!/usr/bin/env bash
# flare's one entry point for a fresh Debian 12 machine (run as root, or with sudo available):
#   bash dev.sh main    install packages, build build/flare (Release), run the GRPO recipe on the local emulator
#   bash dev.sh test    install packages, build, run every test (unit, Lua specs, end-to-end,
#                       sanitizer build of the core libraries, fuzzers); last line "N passed, N failed"
#   bash dev.sh build   install packages and build only
# Each step is cheap when nothing changed.
set -euo pipefail
cd "$(dirname "$0")"
JOBS=$(nproc 2>/dev/null || echo 2)

BUILD_PACKAGES=(g++ make cmake pkg-config luajit libluajit-5.1-dev libcurl4-openssl-dev
  nlohmann-json3-dev libzstd-dev zstd doctest-dev libsqlite3-dev libcpp-httplib-dev libedit-dev
  libisal-dev zlib1g-dev)
TEST_PACKAGES=(clang libclang-rt-14-dev python3 python3-aiohttp wrk tmux chromium lua-check)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "dev.sh: installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

build() {
  install_packages "${BUILD_PACKAGES[@]}"
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j"$JOBS"
}

main_job() {
  build
  local recipe=scripts/grpo.lua
  [ -f "$recipe" ] || recipe=scripts/deploy.lua
  echo "dev.sh: build/flare run $recipe $*"
  build/flare run "$recipe" "$@"
}

run_tests() {
  install_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
  build
  local log_dir=build/test-logs
  mkdir -p "$log_dir"
  local status=0

  echo "== ctest (Release: unit, Lua specs, end-to-end)"
  (cd build && ctest --output-on-failure -j"$JOBS" --timeout 600) 2>&1 | tee "$log_dir/release.txt" || status=1

  echo "== ctest (AddressSanitizer + UBSan: unit tests of the core libraries)"
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-O1 -DFLARE_SANITIZE=ON >/dev/null
  cmake --build build-asan -j"$JOBS" --target unit_tests
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --output-on-failure -L unit -LE slow -j"$JOBS" --timeout 900) 2>&1 | tee "$log_dir/asan.txt" || status=1

  local fuzz_passed=0 fuzz_failed=0
  if [ -f tests/fuzz/run.sh ]; then
    echo "== fuzzers (libFuzzer, bounded time)"
    if bash tests/fuzz/run.sh 2>&1 | tee "$log_dir/fuzz.txt"; then fuzz_passed=1; else fuzz_failed=1; status=1; fi
  fi

  # One closing line over all runs.
  local passed failed
  passed=$(cat "$log_dir/release.txt" "$log_dir/asan.txt" | sed -nE 's/.*tests passed, ([0-9]+) tests failed out of ([0-9]+).*/\2 \1/p' | awk '{p += $1 - $2} END {print p + 0}')
  failed=$(cat "$log_dir/release.txt" "$log_dir/asan.txt" | sed -nE 's/.*tests passed, ([0-9]+) tests failed out of ([0-9]+).*/\1/p' | awk '{f += $1} END {print f + 0}')
  passed=$((passed + fuzz_passed))
  failed=$((failed + fuzz_failed))
  if [ "$status" != 0 ] && [ "$failed" = 0 ]; then failed=1; fi
  echo "$passed passed, $failed failed"
  return "$status"
}

case "${1:-}" in
  main) shift; main_job "$@" ;;
  test) run_tests ;;
  build) build ;;
  *) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
