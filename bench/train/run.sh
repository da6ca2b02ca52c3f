#!/usr/bin/env bash
# Trainer throughput and the time of one whole GRPO step, in one run:
#   bench/train/run.sh [BUILD_DIR=build] [STEPS=20]
# First forward+backward of tiny-gpt and tiny-gpt-m against the same model in
# PyTorch (torch_train.py; Debian python3-torch with libopenblas0, rows skipped
# when missing), on 1 and 2 threads; then bench_train tiny-gpt (2 threads
# beside 1 thread, LoRA, decode); then the default GRPO recipe on the
# in-process emulator for STEPS steps: each step samples 2 prompts x 8 completions, trains (importance sampling +
# AdamW), saves a delta snapshot and hotloads it. The step time is the median
# gap between consecutive metrics lines; sync is the save + hotload part.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "$root" && realpath "${1:-build}")
steps=${2:-20}
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
python=
for p in /usr/bin/python3 python3; do
  if command -v "$p" >/dev/null && "$p" -c 'import torch' 2>/dev/null; then python=$p; break; fi
done
mkdir "$runs/torch"
if [ -n "$python" ]; then
  for model in tiny-gpt tiny-gpt-m; do
    for threads in 1 2; do
      "$python" "$root/bench/train/torch_train.py" "$model" 5 "$threads" >"$runs/torch/$model-$threads"
    done
  done
else
  echo "PyTorch not found (Debian: python3-torch, libopenblas0): its rows are skipped" >&2
fi
"$build/bench/train/bench_train" --torch "$runs/torch" 5
echo
"$build/bench/train/bench_train" tiny-gpt 5
(cd "$root" && "$build/flare" run scripts/grpo.lua --steps="$steps" --runs-dir="$runs" >/dev/null)
"$build/flare" -e '
local path = io.popen("ls " .. arg[1] .. "/grpo/*/metrics.jsonl"):read("*l")
local times, syncs = {}, {}
for line in io.lines(path) do
  local m = flare.json.decode(line)
  times[#times + 1] = m.time
  if m.sync_s then syncs[#syncs + 1] = m.sync_s end
end
local gaps = {}
for i = 2, #times do gaps[#gaps + 1] = times[i] - times[i - 1] end
local function median(t) table.sort(t) return t[math.ceil(#t / 2)] end
local step, sync = median(gaps), median(syncs)
print("")
print("| GRPO step (tiny-gpt, 2 prompts x 8 samples, delta sync), median of " .. #gaps .. " | seconds | share |")
print("|---|---:|---:|")
print(string.format("| whole step | %.3f | 100%% |", step))
print(string.format("| save delta + hotload (sync) | %.3f | %.0f%% |", sync, 100 * sync / step))
print(string.format("| sample + train | %.3f | %.0f%% |", step - sync, 100 * (step - sync) / step))
print(string.format("\ngoal: one step under 1 s: %s", step < 1 and "met" or "NOT met"))
' "$runs"
