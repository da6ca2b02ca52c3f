#!/usr/bin/env bash
# The non-interactive edges of the REPL and `flare report`: piped standard
# input runs as a script without prompts; report's usage errors and exit codes.
# usage: cli_test.sh FLARE
set -u
FLARE=$1
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export HOME="$WORK/home" XDG_STATE_HOME="$WORK/state" XDG_CONFIG_HOME="$WORK/config"
failures=0
check() {  # check NAME EXPECTED ACTUAL
  if [ "$2" != "$3" ]; then
    echo "FAIL: $1: expected [$2], got [$3]"
    failures=$((failures + 1))
  else
    echo "ok: $1"
  fi
}

out=$(printf 'x = 6 * 7\nprint(x)\n' | "$FLARE" repl 2>&1)
check "flare repl with piped input runs it as a script" "42" "$out"
out=$(printf 'print(1 + 1)\n' | "$FLARE" 2>&1)
check "flare with piped input runs it as a script" "2" "$out"
printf 'error("boom")\n' | "$FLARE" repl > /dev/null 2>&1
check "a failing piped script exits 1" "1" "$?"
test ! -e "$XDG_STATE_HOME/flare/history"
check "piped input leaves no history" "0" "$?"
"$FLARE" repl --bogus > /dev/null 2>&1
check "flare repl rejects arguments" "2" "$?"

"$FLARE" report > /dev/null 2>&1
check "flare report without a directory is a usage error" "2" "$?"
"$FLARE" report --sideways "$WORK" > /dev/null 2>&1
check "flare report rejects unknown options" "2" "$?"
out=$("$FLARE" report "$WORK/nope" 2>&1)
check "flare report on a missing directory fails" "1" "$?"
case "$out" in *"is not a run directory"*) echo "ok: the error says why" ;;
  *) echo "FAIL: unexpected message: $out"; failures=$((failures + 1)) ;; esac

mkdir -p "$WORK/run"
"$FLARE" "$HERE/make_run_fixture.lua" "$WORK/run" 12
out=$("$FLARE" report --out "$WORK/custom.html" "$WORK/run")
check "flare report --out names the file it wrote" "wrote $WORK/custom.html" "$out"
test -s "$WORK/custom.html" && test ! -e "$WORK/run/report.html"
check "--out writes only there" "0" "$?"
out=$(NO_COLOR=1 "$FLARE" report --term "$WORK/run")
check "flare report --term exits 0" "0" "$?"
case "$out" in *"reward_mean  last"*"┤"*"step 1"*) echo "ok: --term charts reward_mean" ;;
  *) echo "FAIL: --term output: $out"; failures=$((failures + 1)) ;; esac
case "$out" in *$'\e['*) echo "FAIL: colour without a terminal"; failures=$((failures + 1)) ;; esac

if [ "$failures" -gt 0 ]; then exit 1; fi
echo "PASS"
