#!/usr/bin/env bash
# flare's one entry point for a fresh Debian 12 machine (run as root, or with sudo available):
#   bash dev.sh main    install packages, build build/flare (Release), run the GRPO recipe on the local emulator
#   bash dev.sh test    install packages, build, run every test (unit, Lua specs, end-to-end,
#                       sanitizer build of the core libraries, fuzzers); last line "N passed, N failed"
#   bash dev.sh build   install packages and build only
#   bash dev.sh bench   install packages and the baselines bench/ compares against, build
# Each step is cheap when nothing changed.
set -euo pipefail
cd "$(dirname "$0")"
JOBS=$(nproc 2>/dev/null || echo 2)

BUILD_PACKAGES=(g++ make cmake pkg-config luajit libluajit-5.1-dev libcurl4-openssl-dev
  nlohmann-json3-dev libzstd-dev zstd doctest-dev libsqlite3-dev libcpp-httplib-dev libedit-dev
  libisal-dev zlib1g-dev libsimdjson-dev dpkg-dev patch nginx libnginx-mod-http-js)
TEST_PACKAGES=(clang libclang-rt-14-dev python3 python3-aiohttp wrk tmux chromium lua-check lua-cjson
  nodejs npm luarocks)
# Baselines of bench/: PyTorch on OpenBLAS (libopenblas0, so that libblas.so.3 is
# not the reference BLAS) for bench/train, hyperfine for bench/startup.
BENCH_PACKAGES=(python3-torch libopenblas0 hyperfine)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_packages() {
  local missing=()
  for p in "$@"; do
    # A Node.js installed some other way (NodeSource's nodejs bundles npm and conflicts
    # with Debian's npm package) already serves the tests that need node and npm.
    case "$p" in
      nodejs) command -v node >/dev/null && continue ;;
      npm) command -v npm >/dev/null && continue ;;
    esac
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "dev.sh: installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# LuaJIT rebuilt from Debian's own source package with LUAJIT_ENABLE_CHECKHOOK:
# loops compiled to machine code then check the hook mask, so one Ctrl-C stops
# them too (bindings/host.cpp arms a count hook from the signal handler); the patches in
# tools/luajit/ (each says why in its header) are applied first. The
# static library lands in a per-version cache folder that CMakeLists.txt looks in;
# nothing is done when it is already there.
LUAJIT_CACHE=${FLARE_LUAJIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flare/luajit-checkhook}
LUAJIT_PATCHES=(tools/luajit/*.patch)
luajit_checkhook() {
  local version stamp
  version=$(dpkg-query -W -f='${source:Version}' libluajit-5.1-dev)
  stamp="$version $(cat "${LUAJIT_PATCHES[@]}" | sha256sum | cut -c1-16)"
  luajit_cached() { [ -f "$LUAJIT_CACHE/lib/libluajit-5.1.a" ] && [ "$(cat "$LUAJIT_CACHE/version" 2>/dev/null)" = "$stamp" ]; }
  luajit_cached && return 0
  mkdir -p "$(dirname "$LUAJIT_CACHE")"
  exec 9>"$LUAJIT_CACHE.lock"  # one build at a time on a shared cache
  flock 9
  if luajit_cached; then exec 9>&-; return 0; fi
  if ! apt-get source --print-uris -qq "luajit=$version" >/dev/null 2>&1; then
    echo "dev.sh: enabling Debian source packages (bookworm deb-src)"
    as_root tee /etc/apt/sources.list.d/flare-deb-src.sources >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    as_root apt-get update -qq
  fi
  echo "dev.sh: building LuaJIT $version with LUAJIT_ENABLE_CHECKHOOK into $LUAJIT_CACHE"
  local work
  work=$(mktemp -d)
  (cd "$work" && apt-get source -qq "luajit=$version" >/dev/null 2>&1) || {
    rm -rf "$work"; echo "dev.sh: apt-get source luajit=$version failed" >&2; return 1; }
  local src
  src=$(find "$work" -maxdepth 1 -mindepth 1 -type d -name 'luajit-*' | head -1)
  local p
  for p in "${LUAJIT_PATCHES[@]}"; do patch -s -d "$src" -p1 <"$p"; done  # see each patch's header
  # Debian's own build (debian/rules: `make amalg PREFIX=/usr MULTILIB=...` with dpkg-buildflags),
  # static, plus the hook check; the luajit binary is kept for bench/interrupt.
  # Debian's headers (libluajit-5.1-dev, the same version) stay the ones flare compiles with.
  make -C "$src" -j"$JOBS" -s amalg BUILDMODE=static PREFIX=/usr \
    MULTILIB="lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)" CFLAGS="$(dpkg-buildflags --get CFLAGS)" \
    LDFLAGS="$(dpkg-buildflags --get LDFLAGS)" XCFLAGS+=-DLUAJIT_ENABLE_CHECKHOOK Q= E=@: \
    >"$work/make.log" 2>&1 || { tail -20 "$work/make.log" >&2; rm -rf "$work"; return 1; }
  local out="$LUAJIT_CACHE.tmp.$$"
  mkdir -p "$out/lib" "$out/bin"
  cp "$src/src/libluajit.a" "$out/lib/libluajit-5.1.a"
  cp "$src/src/luajit" "$out/bin/luajit"
  strip --strip-debug "$out/lib/libluajit-5.1.a" "$out/bin/luajit"  # as dh_strip does
  echo "$stamp" >"$out/version"
  rm -rf "$LUAJIT_CACHE" && mv "$out" "$LUAJIT_CACHE"
  rm -rf "$work"
  exec 9>&-
}

build() {
  install_packages "${BUILD_PACKAGES[@]}"
  luajit_checkhook
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
  bench) install_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}" "${BENCH_PACKAGES[@]}"; build ;;
  *) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
