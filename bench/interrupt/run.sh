#!/bin/sh
# The cost of LUAJIT_ENABLE_CHECKHOOK (the hook check that lets one Ctrl-C stop a
# compiled loop): the same scripts under the LuaJIT flare links (Debian's source
# package rebuilt by dev.sh with the check) and under Debian's stock luajit, in
# alternation, in one run. Prints a markdown table of median seconds and ratios.
#
# usage: bench/interrupt/run.sh [ROUNDS]   (default 5; each script prints its best of 3)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rounds=${1:-5}
cache=${FLARE_LUAJIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flare/luajit-checkhook}
checkhook=$cache/bin/luajit
stock=$(command -v luajit)
[ -x "$checkhook" ] || { echo "no $checkhook: run bash dev.sh build first" >&2; exit 2; }

median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for _ in $(seq "$rounds"); do
  for lj in stock checkhook; do
    eval "bin=\$$lj"
    "$bin" "$here/tight_loop.lua" >>"$work/tight.$lj"
    "$bin" "$here/numeric_loop.lua" >>"$work/numeric.$lj"
    "$bin" "$here/grpo_workload.lua" "$root/stdlib" >>"$work/grpo.$lj"
  done
done

echo "| script | stock luajit (s) | with checkhook (s) | ratio |"
echo "|---|---|---|---|"
for s in tight:"while loop, 5e8 adds (tight_loop.lua)" \
         numeric:"200x200 matrix product x50 (numeric_loop.lua)" \
         grpo:"tasks + verify + grpo.build_datums, 3000 steps (grpo_workload.lua)"; do
  key=${s%%:*}
  a=$(median <"$work/$key.stock")
  b=$(median <"$work/$key.checkhook")
  echo "| ${s#*:} | $a | $b | $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f", b / a}') |"
done
echo
echo "medians of $rounds rounds, each the best of 3 inside the script; load $(cut -d' ' -f1 /proc/loadavg)"
echo "stock: $stock ($(dpkg-query -W -f='${Version}' luajit 2>/dev/null)); checkhook: $checkhook ($(cat "$cache/version"))"
