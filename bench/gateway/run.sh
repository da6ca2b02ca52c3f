#!/usr/bin/env bash
# Gateway overhead: requests/s and latency p50/p99 at concurrency 64 (wrk -t2 -c64), direct to
# the upstream against through `flare gateway` (nginx: split_clients 5% canary, the body's model
# rewritten, keep-alive upstreams, a JSON access log) and through the prototype on the
# emulator's HTTP stack (bench_gateway_proxy; it forwards the body as is).
#   bench/gateway/run.sh BUILD_DIR [ROUNDS] [SECONDS] [static|emulator]
# Each row also gives CPU time per request (utime + stime from /proc/PID/stat over the round,
# divided by the requests wrk completed) of the gateway (nginx's master and workers), of the
# gateway moving its log into SQLite (the `flare gateway` process), of the upstream and of wrk:
# on two shared cores, throughput ratios move with whatever else runs; CPU per request does not
# much. PIN=1 pins the upstream to CPU 1 and wrk and the gateways to CPU 0 (taskset), so the
# gateway competes with the load generator, not with the upstream.
# VARIANT='SED SCRIPT' adds a row: the same nginx with its generated configuration edited by
# the sed script (reloaded before each of its rounds, the generated one restored after), e.g.
# VARIANT='s/keepalive 64; keepalive_timeout 10s;/keepalive 32;/' for a smaller upstream pool.
# static: the upstream is nginx answering a fixed JSON body, the cheapest possible model server,
# so the gateway's own cost is the whole difference. emulator: `flare serve` answering one-token
# completions of tiny-gpt, two deployments (production and canary).
set -euo pipefail
build=${1:-build}
rounds=${2:-3}
secs=${3:-5}
mode=${4:-static}
here=$(cd "$(dirname "$0")" && pwd)
flare="$build/flare"
proxy_bin="$build/bench/gateway/bench_gateway_proxy"
dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
if [ "${PIN:-0}" = 1 ]; then pin_up="taskset -c 1"; pin_gw="taskset -c 0"; else pin_up=; pin_gw=; fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
own=$(free_port)
key=bench_gateway_key_0123456789

if [ "$mode" = static ]; then
  up1=$(free_port); up2=$(free_port)
  cat > "$dir/up.conf" <<CONF
worker_processes 1; daemon off; pid $dir/up.pid; error_log $dir/up.err;
events { worker_connections 4096; }
http {
  access_log off; default_type application/json;
  server { listen 127.0.0.1:$up1; keepalive_requests 1000000;
    location / { return 200 '{"choices":[{"text":"ok","finish_reason":"length"}]}'; } }
  server { listen 127.0.0.1:$up2; keepalive_requests 1000000;
    location / { return 200 '{"choices":[{"text":"ok","finish_reason":"length"}]}'; } }
}
CONF
  $pin_up nginx -c "$dir/up.conf" -p "$dir" & pids+=($!)
  m1=m1; m2=m2
else
  up1=$(free_port); up2=$up1
  FLARE_EMULATOR_API_KEY="$key" $pin_up "$flare" serve --port "$up1" --state-dir "$dir/state" \
    --provision-delay 0 --idle-timeout 3600 >"$dir/serve.log" 2>&1 & pids+=($!)
  for _ in $(seq 50); do curl -sf -o /dev/null -H "X-Api-Key: $key" "http://127.0.0.1:$up1/v1/accounts" && break; sleep 0.1; done
  for d in v1 v2; do
    curl -sf -o /dev/null -X POST -H "X-Api-Key: $key" -H 'Content-Type: application/json' \
      -d '{"baseModel":"accounts/local/models/tiny-gpt","minReplicaCount":1,"maxReplicaCount":1}' \
      "http://127.0.0.1:$up1/v1/accounts/local/deployments?deploymentId=$d"
  done
  m1=accounts/local/deployments/v1; m2=accounts/local/deployments/v2
  for _ in $(seq 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $key" \
      -H 'Content-Type: application/json' -d "{\"model\":\"$m2\",\"prompt\":\"ab\",\"max_tokens\":1}" \
      "http://127.0.0.1:$up1/inference/v1/completions")
    [ "$code" = 200 ] && break
    sleep 0.1
  done
fi

# The gateway as flare ships it: a registry with two versions, production and a 5% canary.
reg="$dir/registry.sqlite"
rel() { "$flare" release --registry "$reg" "$@" >/dev/null; }
echo 1 >"$dir/w1"; echo 2 >"$dir/w2"
rel register --family bench --base-model b --snapshot s1 --weights "$dir/w1"
rel register --family bench --base-model b --snapshot s2 --weights "$dir/w2"
rel endpoint bench@v1 --url "http://127.0.0.1:$up1" --model "$m1"
rel endpoint bench@v2 --url "http://127.0.0.1:$up2" --model "$m2"
rel promote bench@v1 --to production --force --reason bench
rel promote bench@v2 --force --reason bench
rel canary bench bench@v2 --percent 5 --reason bench
up_pid=${pids[0]}
$pin_gw "$flare" gateway bench --registry "$reg" --dir "$dir/gw" >"$dir/gw.out" 2>&1 & pids+=($!)
ingest_pid=$!
for _ in $(seq 100); do grep -q 'gateway bench on' "$dir/gw.out" 2>/dev/null && break; sleep 0.1; done
gw=$(grep -o 'http://[0-9.:]*' "$dir/gw.out")
gw_pid=$(cat "$dir/gw/nginx.pid")
targets="direct nginx own"
if [ -n "${VARIANT:-}" ]; then
  targets="direct nginx variant own"
  cp "$dir/gw/nginx.conf" "$dir/generated.conf"
  sed -e "$VARIANT" "$dir/generated.conf" >"$dir/variant.conf"
  nginx -t -q -c "$dir/variant.conf" -p "$dir/gw"
fi
use_conf() { cp "$dir/$1.conf" "$dir/gw/nginx.conf"; kill -HUP "$gw_pid"; sleep 1; }
$pin_gw "$proxy_bin" "$own" "$up1" "$up2" 5 "$dir/own.log" & pids+=($!)
own_pid=$!
sleep 0.5

# CPU ticks (1/100 s) used so far by the processes and their live children
ticks() {
  local s=0 p
  for p in "$@" $(for q in "$@"; do ps -o pid= --ppid "$q"; done); do
    [ -r "/proc/$p/stat" ] && s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$s"
}

measure() {  # URL MODEL GATEWAY_PID -> "rps p50_us p99_us non2xx gw_us ingest_us up_us wrk_us"
  local g0 i0 u0
  g0=$(ticks $3); i0=$(ticks "$ingest_pid"); u0=$(ticks "$up_pid")
  BENCH_KEY=$key BENCH_MODEL=$2 /usr/bin/time -f "wrk_cpu %U %S" -o "$dir/wrk.time" \
    $pin_gw wrk -t2 -c64 -d"${secs}s" --latency -s "$here/post.lua" "$1" >"$dir/wrk.out"
  cat "$dir/wrk.time" >>"$dir/wrk.out"
  awk -v g=$(($(ticks $3) - g0)) -v i=$(($(ticks "$ingest_pid") - i0)) \
    -v u=$(($(ticks "$up_pid") - u0)) '
    function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; return v * 1e6 }
    /Requests\/sec/ { rps = $2 } /requests in/ { n = $1 } /Non-2xx/ { bad = $NF }
    /^wrk_cpu/ { w = $2 + $3 }
    $1 == "50%" { p50 = us($2) } $1 == "99%" { p99 = us($2) }
    END { printf "%.0f %.0f %.0f %d %.1f %.1f %.1f %.1f\n", rps, p50, p99, bad, g * 1e4 / n,
      i * 1e4 / n, u * 1e4 / n, w * 1e6 / n }' "$dir/wrk.out"
}
declare -A rps p50 p99 cgw cin cup cwrk ratio added idle
for r in $(seq 1 "$rounds"); do
  for target in $targets; do
    case $target in
      direct) url="http://127.0.0.1:$up1/inference/v1/completions"; model=$m1; pid= ;;
      nginx) url="$gw/inference/v1/completions"; model=bench; pid=$gw_pid ;;
      variant) url="$gw/inference/v1/completions"; model=bench; pid=$gw_pid; use_conf variant ;;
      own) url="http://127.0.0.1:$own/inference/v1/completions"; model=$m1; pid=$own_pid ;;
    esac
    read -r a b c bad g i u w < <(measure "$url" "$model" "$pid")
    [ $target = variant ] && use_conf generated
    rps[$target]+="$a "; p50[$target]+="$b "; p99[$target]+="$c "
    cgw[$target]+="$g "; cin[$target]+="$i "; cup[$target]+="$u "; cwrk[$target]+="$w "
    echo "round $r $target: $a req/s, p50 $b us, p99 $c us, non-2xx $bad;" \
      "CPU us/req: gateway $g, log ingest $i, upstream $u, wrk $w" >&2
    # paired with this round's direct figures: the load of the machine moves both alike
    [ $target = direct ] && { dr=$a; dp=$b; }
    ratio[$target]+="$(awk -v a="$a" -v d="$dr" 'BEGIN{printf "%.2f", a/d}') "
    added[$target]+="$((b - dp)) "
  done
  # unloaded: one connection, one request at a time, the hop's own latency
  for target in direct nginx; do
    [ $target = direct ] && url="http://127.0.0.1:$up1/inference/v1/completions" model=$m1 \
      || url="$gw/inference/v1/completions" model=bench
    b=$(BENCH_KEY=$key BENCH_MODEL=$model $pin_gw wrk -t1 -c1 -d2s --latency -s \
      "$here/post.lua" "$url" | awk '
      function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; return v * 1e6 }
      $1 == "50%" { print us($2) }')
    idle[$target]+="$b "
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
d_rps=$(echo "${rps[direct]}" | median); d_p50=$(echo "${p50[direct]}" | median)
d_p99=$(echo "${p99[direct]}" | median)
cpu() { echo "$(echo "${cgw[$1]}" | median) | $(echo "${cin[$1]}" | median) |" \
  "$(echo "${cup[$1]}" | median) | $(echo "${cwrk[$1]}" | median)"; }
echo
echo "upstream: $mode; median of $rounds rounds, ${secs} s each, wrk -t2 -c64," \
  "$([ "${PIN:-0}" = 1 ] && echo "upstream on CPU 1, wrk and gateway on CPU 0," || echo "unpinned,")" \
  "load $(cut -d' ' -f1 /proc/loadavg)"
echo
echo "| path | req/s | of direct | p50 | added p50 | p99 | CPU µs/req: gateway | log ingest | upstream | wrk |"
echo "|---|---|---|---|---|---|---|---|---|---|"
echo "| direct to the upstream | $d_rps | 1.00 | ${d_p50} µs | — | ${d_p99} µs | $(cpu direct) |"
for target in ${targets#direct }; do
  a=$(echo "${rps[$target]}" | median); b=$(echo "${p50[$target]}" | median)
  c=$(echo "${p99[$target]}" | median)
  case $target in
    nginx) name="flare gateway (nginx)" ;;
    variant) name="flare gateway, config edited: \`$VARIANT\`" ;;
    own) name="prototype on HttpServer + httplib" ;;
  esac
  echo "| $name | $a | $(echo "${ratio[$target]}" | median) | ${b} µs | $(echo "${added[$target]}" | median) µs | ${c} µs | $(cpu $target) |"
done
echo
echo "(of direct, added p50: the median over rounds of each round's ratio and difference to that round's direct run)"
i_d=$(echo "${idle[direct]}" | median); i_n=$(echo "${idle[nginx]}" | median)
echo "unloaded (wrk -t1 -c1, 2 s a round): p50 direct $i_d µs, flare gateway (nginx) $i_n µs, added $(awk -v a="$i_n" -v d="$i_d" 'BEGIN{printf "%.0f", a-d}') µs"
sleep 1.5  # the gateway moves its access log into the registry every 0.2 s
"$flare" release --registry "$reg" metrics bench --window 3600
