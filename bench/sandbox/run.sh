#!/bin/sh
# The sandbox's cost on compute-heavy Lua: the same scripts (bench/interrupt's matrix product and
# recipe-like workload; each prints its best of 3 in seconds) under `flare run`, under
# `flare run --sandbox` (default limits: the JIT runs, the time limit is a timer, memory is
# counted by the allocator) and under `--sandbox --max-instructions` (a count hook: interpreted),
# one after the other in one run. Prints a markdown table with the ratios to `flare run`.
#
# usage: bench/sandbox/run.sh [FLARE]   (default build/flare)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
flare=$(cd "$(dirname "${1:-$root/build/flare}")" && pwd)/$(basename "${1:-$root/build/flare}")
scripts=$root/bench/interrupt
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

run() {  # label, then the flare arguments before the script; prints seconds per script
  label=$1
  shift
  numeric=$("$flare" run "$@" "$scripts/numeric_loop.lua" 50)
  grpo=$("$flare" run "$@" "$scripts/grpo_workload.lua" "$root/stdlib" 3000)
  echo "$label $numeric $grpo"
}

trusted=$(run trusted)
sandboxed=$(run sandboxed --sandbox --run-dir "$work/runs")
budget=$(run budget --sandbox --run-dir "$work/runs" --max-instructions 1e15)

echo "$trusted
$sandboxed
$budget" | awk '
  NR == 1 { tn = $2; tg = $3 }
  { n[NR] = $2; g[NR] = $3; l[NR] = $1 }
  END {
    print "| mode | matrix product 200x200 x50 (s) | ratio | recipe-like workload, 3000 steps (s) | ratio |"
    print "|---|---|---|---|---|"
    name[1] = "`flare run` (trusted)"
    name[2] = "`flare run --sandbox` (time and memory limits, JIT on)"
    name[3] = "`flare run --sandbox --max-instructions N` (count hook, interpreted)"
    for (i = 1; i <= 3; i++)
      printf "| %s | %.3f | %.2fx | %.3f | %.2fx |\n", name[i], n[i], n[i] / tn, g[i], g[i] / tg
  }'
