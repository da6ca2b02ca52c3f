#!/bin/sh
# bench/sampler: one-token completions against one `flare serve`, in one run:
# flare's DeploymentSampler, a Python aiohttp client and wrk, same body, same
# concurrency. Prints requests/s and the client's CPU seconds per 1000 requests.
# The flare client runs twice: as flare runs it (plain http:// to an IP address
# goes through flare's own HTTP/1.1 reader) and with FLARE_HTTP_LIBCURL=1 (every
# request through libcurl, as https:// and proxied requests go); the ratios
# compare the first. Every client runs twice more with the answer streamed
# over SSE (stream=true with perf_metrics_in_response, as the Fireworks SDK
# asks), flare's sampler as it streams by default.
# usage: bench/sampler/run.sh [BUILD_DIR] [REQUESTS] [CONCURRENCY]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../../build}
requests=${2:-20000}
concurrency=${3:-32}
flare="$build/flare"
python=/usr/bin/python3  # Debian's python3 with python3-aiohttp
key=bench_sampler_key_0123456789
state=$(mktemp -d)
port=$($python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
model="accounts/local/deployments/bench"

FLARE_EMULATOR_API_KEY="$key" "$flare" serve --port "$port" --state-dir "$state" --provision-delay 0 \
  --idle-timeout 3600 >"$state/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$state"' EXIT
for _ in $(seq 50); do curl -sf -o /dev/null -H "X-Api-Key: $key" "$base/v1/accounts" && break; sleep 0.1; done
curl -sf -o /dev/null -X POST -H "X-Api-Key: $key" -H 'Content-Type: application/json' \
  -d '{"baseModel":"accounts/local/models/tiny-gpt","minReplicaCount":1,"maxReplicaCount":1}' \
  "$base/v1/accounts/local/deployments?deploymentId=bench"
for _ in $(seq 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $key" \
    -H 'Content-Type: application/json' -d "{\"model\":\"$model\",\"prompt\":[1,2],\"max_tokens\":1}" \
    "$base/inference/v1/completions")
  [ "$code" = 200 ] && break
  sleep 0.1
done

wrk_secs=$(awk -v r="$requests" 'BEGIN { printf "%d", (r / 2000 < 5) ? 5 : r / 2000 }')
run_mode() {  # plain|stream: one line per client
  mode=$1
  flare_out=$("$flare" run "$here/flare_client.lua" "$base" "$key" "$model" "$requests" "$concurrency" "$mode")
  curl_out=$(FLARE_HTTP_LIBCURL=1 "$flare" run "$here/flare_client.lua" "$base" "$key" "$model" "$requests" "$concurrency" "$mode")
  py_out=$($python "$here/aiohttp_client.py" "$base" "$key" "$model" "$requests" "$concurrency" "$mode")
  wrk_out=$(BENCH_KEY=$key BENCH_MODEL=$model BENCH_STREAM=$([ "$mode" = stream ] && echo 1 || echo 0) \
    /usr/bin/time -f 'CPU %U %S' wrk -t1 -c"$concurrency" -d"${wrk_secs}s" -s "$here/wrk_post.lua" \
    "$base/inference/v1/completions" 2>&1)
  $python - "$flare_out" "$py_out" "$wrk_out" "$concurrency" "$(nproc)" "$curl_out" "$mode" <<'PY'
import re, sys
flare, py, wrk, conc, cores, via_curl, mode = sys.argv[1:8]
def parse(line):
    n, wall, cpu, err = line.split()
    return int(n), float(wall), float(cpu), int(err)
rows = []
for name, line in (("flare sampler", flare), ("flare sampler via libcurl", via_curl),
                   ("python aiohttp", py)):
    n, wall, cpu, err = parse(line)
    rows.append((name, n, n / wall, cpu * 1000 / n, err))
total = int(re.search(r"(\d+) requests in", wrk).group(1))
rps = float(re.search(r"Requests/sec:\s*([\d.]+)", wrk).group(1))
u, s = map(float, re.search(r"CPU ([\d.]+) ([\d.]+)", wrk).groups())
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", wrk)
rows.append(("wrk", total, rps, (u + s) * 1000 / total, int(non2xx.group(1)) if non2xx else 0))
what = "streamed over SSE (stream=true, perf_metrics_in_response)" if mode == "stream" else "one JSON body each (stream=false)"
print(f"one-token completions, {what}, concurrency {conc}, {cores} cores shared by server and client\n")
print("| client | requests | requests/s | client CPU s / 1000 req | µs CPU / req | errors |")
print("|---|---|---|---|---|---|")
for name, n, r, c, e in rows:
    print(f"| {name} | {n} | {r:,.0f} | {c:.3f} | {c * 1000:.1f} | {e} |")
fl, pyr, wr = rows[0][2], rows[2][2], rows[3][2]
print(f"\nflare / python throughput: {fl / pyr:.2f}x (goal >= 3x); flare / wrk: {fl / wr:.0%} (goal >= 70%);"
      f" flare client CPU per request: {rows[0][3] * 1000:.1f} µs (goal <= 30 µs); "
      f"python CPU per request / flare's: {rows[2][3] / rows[0][3]:.1f}x\n")
PY
}
run_mode plain
run_mode stream
