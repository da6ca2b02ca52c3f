#!/usr/bin/env bash
# Decoding JSON lines: flare.json.decode_lines (simdjson; also flare.json.decode per line)
# against python3's json.loads per line and lua-cjson's decode per line (in flare's LuaJIT), on
# files generated here (gen.py, the same bytes every time): a 100 MB mix of chat-style
# data-set rows and metrics rows, then each kind alone (50 MB). Every figure is the best of
# REPEAT runs of the decode alone (file already in memory), in CPU seconds of the process.
#   bench/json/run.sh [BUILD_DIR] [REPEAT]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-build}"
repeat="${2:-3}"
flare="$build/flare"
[ -x "$flare" ] || { echo "no $flare (build first)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# lua-cjson in flare's own LuaJIT (flare loads Lua C modules), else in Debian's luajit.
cjson_runner=""
if "$flare" -e 'require("cjson")' >/dev/null 2>&1; then
  cjson_runner="$flare run"
elif luajit -e 'require("cjson")' 2>/dev/null; then
  cjson_runner="luajit"
fi

echo "| file | rows | flare decode_lines | flare decode per line | python3 json.loads | lua-cjson | flare vs python | flare vs lua-cjson |"
echo "|---|---|---|---|---|---|---|---|"
for spec in "mixed 100" "chat 50" "metrics 50"; do
  set -- $spec
  kind=$1 size=$2
  file="$work/$kind.jsonl"
  python3 "$here/gen.py" "$file" "$size" "$kind"
  mb=$(stat -c %s "$file" | awk '{printf "%.1f", $1 / 1e6}')
  out=$("$flare" run "$here/flare_decode.lua" "$file" "$repeat")
  lines=$(echo "$out" | awk '/^decode_lines/ {print $2}')
  per_line=$(echo "$out" | awk '/^decode_per_line/ {print $2}')
  rows=$(echo "$out" | awk '/^decode_lines/ {print $3}')
  py=$(python3 "$here/python_decode.py" "$file" "$repeat" | awk '{print $2}')
  cj=""
  [ -n "$cjson_runner" ] && cj=$($cjson_runner "$here/cjson_decode.lua" "$file" "$repeat" | awk '{print $2}')
  awk -v k="$kind" -v mb="$mb" -v rows="$rows" -v fl="$lines" -v pl="$per_line" -v py="$py" \
      -v cj="$cj" 'BEGIN {
    printf "| %s %s MB | %d | %.3f s (%.0f MB/s) | %.3f s | %.3f s (%.0f MB/s) | %s | %.2fx | %s |\n",
      k, mb, rows, fl, mb / fl, pl, py, mb / py,
      (cj == "" ? "missing (apt-get install lua-cjson)" : sprintf("%.3f s (%.0f MB/s)", cj, mb / cj)),
      py / fl, (cj == "" ? "-" : sprintf("%.2fx", cj / fl))
  }'
done
