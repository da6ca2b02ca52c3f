#!/bin/sh
# Startup and JSON-decode benchmark: flare vs bare luajit vs the Python a SDK
# user starts. Prints a markdown table; baselines come from the same run.
#
# usage: bench/startup/run.sh [FLARE] [RUNS]   (defaults: build/flare, 40)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
flare=$(cd "$root" && realpath "${1:-build/flare}")
runs=${2:-40}
# The real interpreter, not a version-manager shim that would add its own start-up.
python=$(python3 -c 'import sys; print(sys.executable)')
work=${FLARE_BENCH_DIR:-${TMPDIR:-/tmp}/flare-bench-startup}
mkdir -p "$work"
command -v hyperfine >/dev/null || {
  echo "bench/startup needs hyperfine (Debian package): apt-get install hyperfine" >&2
  exit 2
}

hyperfine -N --style none --warmup 5 --runs "$runs" --export-json "$work/startup.json" \
  "$flare run $here/empty.lua" \
  "luajit -e ''" \
  "$python -c 'import json, urllib.request'" >/dev/null

doc=$work/completions-50mb.json
[ -s "$doc" ] || "$python" "$here/make_doc.py" "$doc" 50
: >"$work/flare_decode.txt"
: >"$work/python_decode.txt"
for _ in 1 2 3 4 5; do
  "$flare" run "$here/decode.lua" "$doc" >>"$work/flare_decode.txt"
  "$python" "$here/decode.py" "$doc" >>"$work/python_decode.txt"
done

"$python" "$here/report.py" "$work/startup.json" "$work/flare_decode.txt" \
  "$work/python_decode.txt" "$(wc -c <"$doc")"
